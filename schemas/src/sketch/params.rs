//! A sketch's four parameters: precision (`log2m`, `regwidth`) and storage forms
//! (`expthresh`, `sparseon`), checked as the extension checks them.

use std::fmt;

use super::StoredForm;

/// The extension's default number of registers, as a power of two (2048 registers: a
/// standard error of 1.04/√2048 ≈ 2.3 %).
pub const DEFAULT_LOG2M: u8 = 11;
/// The extension's default register width in bits.
pub const DEFAULT_REGWIDTH: u8 = 5;
/// The largest explicit cutoff the extension accepts (its explicit sets hold at most 16,383
/// hashes, and a cutoff is a power of two).
pub const MAX_EXPLICIT_CUTOFF: u16 = 8192;

/// How many distinct hashes a sketch lists before it keeps registers instead: the
/// extension's `expthresh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExplicitCutoff {
    /// As many as fit in the FULL form's bytes (`expthresh = -1`, the extension's default).
    Auto,
    /// At most this many: 0 (never explicit) or a power of two up to
    /// [`MAX_EXPLICIT_CUTOFF`].
    Values(u16),
}

impl ExplicitCutoff {
    /// The cutoff of the extension's `expthresh` argument, or what is wrong with it.
    pub fn of_expthresh(expthresh: i64) -> Result<Self, SketchParamsError> {
        match expthresh {
            -1 => Ok(Self::Auto),
            0 => Ok(Self::Values(0)),
            n if n > 0 && n <= i64::from(MAX_EXPLICIT_CUTOFF) && n.count_ones() == 1 => {
                Ok(Self::Values(n as u16))
            }
            _ => Err(SketchParamsError::ExplicitCutoff(expthresh)),
        }
    }

    /// The extension's `expthresh` argument: -1 for [`ExplicitCutoff::Auto`].
    pub fn expthresh(self) -> i64 {
        match self {
            Self::Auto => -1,
            Self::Values(n) => i64::from(n),
        }
    }

    /// The six low bits of a sketch's cutoff byte: 63 for auto, 0 for none, else
    /// log2(cutoff) + 1.
    fn encoded(self) -> u8 {
        match self {
            Self::Auto => 63,
            Self::Values(0) => 0,
            Self::Values(n) => n.trailing_zeros() as u8 + 1,
        }
    }
}

/// What is wrong with a sketch's precision or storage settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SketchParamsError {
    /// log2m outside the extension's range.
    #[error("LOG2M {0} is outside 4..=17")]
    Log2m(i64),
    /// A register width outside the extension's range.
    #[error("REGWIDTH {0} is outside 1..=7")]
    RegisterWidth(i64),
    /// An explicit cutoff the extension refuses.
    #[error(
        "EXPTHRESH {0} is not -1 (auto), 0 (never explicit) or a power of two up to {MAX_EXPLICIT_CUTOFF}"
    )]
    ExplicitCutoff(i64),
    /// A sparse setting other than 0 or 1.
    #[error("SPARSEON {0} is not 0 or 1")]
    Sparse(i64),
    /// SPARSE on at a precision whose SPARSE form the extension misreads.
    #[error(
        "SPARSEON 1 cannot be used at LOG2M {log2m} and REGWIDTH {regwidth}: postgresql-hll reads the zero \
         padding of some SPARSE sketches this narrow as one more register and then undercounts; turn SPARSE \
         off with `{log2m}, {regwidth}, -1, 0` (or `{log2m}, {regwidth}, 0, 0`, the FULL-only form of Braid \
         before 2026-12, which keeps such a view's existing tables), or use a larger LOG2M or REGWIDTH"
    )]
    SparseMisread {
        /// The log2m asked for.
        log2m: u8,
        /// The register width asked for.
        regwidth: u8,
    },
}

/// The precision of a sketch (`log2m`, `regwidth`) and its storage forms (`expthresh`,
/// `sparseon`): the four parameters of the extension's `hll_add_agg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SketchParams {
    /// log2 of the number of registers: 4 to 17.
    pub log2m: u8,
    /// Bits per register: 1 to 7 (the extension's limit).
    pub regwidth: u8,
    /// How many distinct hashes are listed before the sketch keeps registers.
    pub explicit_cutoff: ExplicitCutoff,
    /// Whether registers are written SPARSE while that is smaller than FULL.
    pub sparse: bool,
}

impl Default for SketchParams {
    /// The extension's defaults: `hll_add_agg(h)` is `hll_add_agg(h, 11, 5, -1, 1)`.
    fn default() -> Self {
        Self {
            log2m: DEFAULT_LOG2M,
            regwidth: DEFAULT_REGWIDTH,
            explicit_cutoff: ExplicitCutoff::Auto,
            sparse: true,
        }
    }
}

impl SketchParams {
    /// Checked precision with the extension's default storage forms (auto explicit cutoff,
    /// sparse on), or what is wrong with it.
    pub fn new(log2m: i64, regwidth: i64) -> Result<Self, SketchParamsError> {
        Self::checked(log2m, regwidth, -1, 1)
    }

    /// The extension's four arguments (`log2m`, `regwidth`, `expthresh`, `sparseon`), checked.
    pub fn checked(
        log2m: i64,
        regwidth: i64,
        expthresh: i64,
        sparseon: i64,
    ) -> Result<Self, SketchParamsError> {
        let log2m = u8::try_from(log2m)
            .ok()
            .filter(|l| (4..=17).contains(l))
            .ok_or(SketchParamsError::Log2m(log2m))?;
        let regwidth = u8::try_from(regwidth)
            .ok()
            .filter(|r| (1..=7).contains(r))
            .ok_or(SketchParamsError::RegisterWidth(regwidth))?;
        let sparse = match sparseon {
            0 => false,
            1 => true,
            other => return Err(SketchParamsError::Sparse(other)),
        };
        let params = Self {
            log2m,
            regwidth,
            explicit_cutoff: ExplicitCutoff::of_expthresh(expthresh)?,
            sparse,
        };
        if params.sparse && params.sparse_padding_can_be_misread() {
            return Err(SketchParamsError::SparseMisread { log2m, regwidth });
        }
        Ok(params)
    }

    /// These parameters with the extension's `expthresh` and `sparseon` arguments, checked.
    pub fn with_storage(self, expthresh: i64, sparseon: i64) -> Result<Self, SketchParamsError> {
        let [log2m, regwidth, ..] = self.arguments();
        Self::checked(log2m, regwidth, expthresh, sparseon)
    }

    /// Whether some SPARSE sketch of this precision ends in at least one whole (zero) entry of
    /// padding: the extension counts `bytes * 8 / entry_bits` entries, so it would read that
    /// padding as "register 0 is 0" and overwrite register 0 (entries narrower than a byte,
    /// at LOG2M 4–6 with narrow registers).
    fn sparse_padding_can_be_misread(self) -> bool {
        let entry_bits = usize::from(self.log2m + self.regwidth);
        let full_bits = self.registers() * usize::from(self.regwidth);
        entry_bits < 8
            && (1..)
                .take_while(|filled| filled * entry_bits < full_bits)
                .any(|filled| (8 - filled * entry_bits % 8) % 8 >= entry_bits)
    }

    /// The extension's four arguments: `[log2m, regwidth, expthresh, sparseon]`.
    pub fn arguments(self) -> [i64; 4] {
        [
            i64::from(self.log2m),
            i64::from(self.regwidth),
            self.explicit_cutoff.expthresh(),
            i64::from(self.sparse),
        ]
    }

    /// The relative standard error of a cardinality estimate: 1.04 / √(2^log2m).
    pub fn standard_error(self) -> f64 {
        1.04 / f64::from(1u32 << self.log2m).sqrt()
    }

    pub(super) fn registers(self) -> usize {
        1 << self.log2m
    }

    /// Bytes of the FULL form's registers.
    pub(super) fn full_bytes(self) -> usize {
        (usize::from(self.regwidth) * self.registers()).div_ceil(8)
    }

    /// How many distinct hashes an EXPLICIT sketch holds at most.
    pub fn explicit_limit(self) -> usize {
        match self.explicit_cutoff {
            ExplicitCutoff::Auto => self.full_bytes() / 8,
            ExplicitCutoff::Values(n) => usize::from(n),
        }
    }

    /// The 3-byte header of a sketch of `form`: version 1 and the form; register width and
    /// log2m; sparse flag and explicit cutoff.
    pub(super) fn header(self, form: StoredForm) -> [u8; 3] {
        [
            (1 << 4) | form as u8,
            ((self.regwidth - 1) << 5) | self.log2m,
            (u8::from(self.sparse) << 6) | self.explicit_cutoff.encoded(),
        ]
    }
}

impl fmt::Display for SketchParams {
    /// As the extension's arguments: `11, 5, -1, 1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [log2m, regwidth, expthresh, sparseon] = self.arguments();
        write!(f, "{log2m}, {regwidth}, {expthresh}, {sparseon}")
    }
}
