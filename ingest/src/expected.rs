//! The position bookkeeping: the stored position of every partition assigned to this process,
//! as it last wrote or loaded them. Every write is fenced on these, so a process that missed a
//! rebalance, or whose positions an operator moved, never writes twice.

use std::collections::BTreeMap;

use schemas::position::{Offset, Partition, Positions};

/// Where a newly assigned partition is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The stored position.
    Offset(i64),
    /// Kafka's first offset: the layer has no position stored for it yet.
    Beginning,
}

impl StartAt {
    /// The start of a partition whose stored position is `stored` (`None`: nothing stored).
    pub fn of(stored: Option<Offset>) -> Self {
        stored.map_or(StartAt::Beginning, StartAt::Offset)
    }

    /// The same position as Kafka's client names it.
    pub fn kafka_offset(self) -> rdkafka::Offset {
        match self {
            StartAt::Offset(offset) => rdkafka::Offset::Offset(offset),
            StartAt::Beginning => rdkafka::Offset::Beginning,
        }
    }
}

/// The stored position of every assigned partition (`None`: nothing stored yet; read from
/// Kafka's first offset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    positions: BTreeMap<Partition, Option<Offset>>,
}

impl Expected {
    /// Exactly `loaded` assigned, at their stored positions.
    pub fn assigned(loaded: BTreeMap<Partition, Option<Offset>>) -> Self {
        Self { positions: loaded }
    }

    /// The stored position of `partition`, if it is assigned and has one.
    pub fn get(&self, partition: Partition) -> Option<Offset> {
        self.positions.get(&partition).copied().flatten()
    }

    /// Whether `partition` is assigned here (a message fetched before a revoke is not).
    pub fn is_assigned(&self, partition: Partition) -> bool {
        self.positions.contains_key(&partition)
    }

    /// Whether `partition` is assigned and has a stored position.
    pub fn has_position(&self, partition: Partition) -> bool {
        self.get(partition).is_some()
    }

    /// The assigned partitions.
    pub fn partitions(&self) -> Vec<Partition> {
        self.positions.keys().copied().collect()
    }

    /// A write stored `ends`: they are the stored positions from now on.
    pub fn advance(&mut self, ends: &Positions) {
        for (&partition, &offset) in ends {
            self.positions.insert(partition, Some(offset));
        }
    }

    /// The positions `loaded` again from the store (after a fence, or an operator's move).
    pub fn reload(&mut self, loaded: BTreeMap<Partition, Option<Offset>>) {
        for (partition, position) in loaded {
            if let Some(expected) = self.positions.get_mut(&partition) {
                *expected = position;
            }
        }
    }

    /// Everything was revoked.
    pub fn clear(&mut self) {
        self.positions.clear();
    }

    /// Where each assigned partition is read from.
    pub fn starts(&self) -> BTreeMap<Partition, StartAt> {
        self.positions
            .iter()
            .map(|(&p, &o)| (p, StartAt::of(o)))
            .collect()
    }

    /// The partitions with a stored position, at it.
    pub fn stored(&self) -> Positions {
        self.positions
            .iter()
            .filter_map(|(&p, &o)| Some((p, o?)))
            .collect()
    }

    /// Whether `position` of `partition` lies past what `buffered` (a buffer's ends) holds
    /// and, failing that, past the stored position (0 when there is neither): then the next
    /// commit must record it.
    pub fn is_past(&self, buffered: &Positions, partition: Partition, position: Offset) -> bool {
        let known = buffered
            .get(&partition)
            .copied()
            .or(self.get(partition))
            .unwrap_or(0);
        position > known
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_move_the_expected_positions_and_reloads_only_touch_assigned_partitions() {
        let mut expected = Expected::assigned(BTreeMap::from([(0, Some(5)), (1, None)]));
        assert!(expected.is_assigned(1) && !expected.has_position(1));
        assert_eq!(
            expected.starts(),
            BTreeMap::from([(0, StartAt::Offset(5)), (1, StartAt::Beginning)])
        );
        expected.advance(&BTreeMap::from([(1, 3)]));
        assert_eq!(expected.stored(), BTreeMap::from([(0, 5), (1, 3)]));
        // A reload names a partition no longer assigned: it stays unassigned.
        expected.reload(BTreeMap::from([(0, Some(9)), (2, Some(1))]));
        assert_eq!(expected.stored(), BTreeMap::from([(0, 9), (1, 3)]));
        assert!(!expected.is_assigned(2));
        expected.reload(BTreeMap::from([(1, None)]));
        assert_eq!(expected.starts()[&1], StartAt::Beginning);
        expected.clear();
        assert!(expected.partitions().is_empty());
    }

    #[test]
    fn a_position_is_past_the_buffer_or_else_the_stored_one() {
        let expected = Expected::assigned(BTreeMap::from([(0, Some(5)), (1, None)]));
        let buffered = BTreeMap::from([(0, 8)]);
        assert!(!expected.is_past(&buffered, 0, 8));
        assert!(expected.is_past(&buffered, 0, 9));
        assert!(expected.is_past(&BTreeMap::new(), 0, 6));
        assert!(!expected.is_past(&BTreeMap::new(), 0, 5));
        // Nothing stored and nothing buffered: anything past 0.
        assert!(!expected.is_past(&buffered, 1, 0));
        assert!(expected.is_past(&buffered, 1, 1));
    }
}
