//! The read-only login role for BI tools: created and kept by Braid only, limited, and given
//! its password as a SCRAM verifier so that the password itself never reaches the server (nor
//! its statement log).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use schemas::config::ServingConfig;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use super::ServingSqlError;

/// The comment that marks a role as created by Braid.
pub const MARK: &str = "created by braid for BI tools (serving.bi_role)";

/// SCRAM iterations, as PostgreSQL's own default.
const ITERATIONS: u32 = 4096;

/// Creates or updates the role: password, `LOGIN` without other privileges, the configured
/// limits, and `SELECT` on the `serving` schema.
pub async fn install(
    pool: &PgPool,
    serving: &ServingConfig,
    password: &str,
) -> Result<(), ServingSqlError> {
    let role = &serving.bi_role;
    let existing: Option<(Option<String>,)> = sqlx::query_as(
        "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
    )
    .bind(role)
    .fetch_optional(pool)
    .await?;
    let verb = match &existing {
        None => "CREATE",
        Some((Some(mark),)) if mark == MARK => "ALTER",
        Some(_) => return Err(ServingSqlError::RoleNotOurs { role: role.clone() }),
    };
    let verifier = scram_verifier(password, &salt());
    // Utility statements take no parameters: let the server quote the role and the values.
    let statements: Vec<(String,)> = sqlx::query_as(
        "SELECT format($3 || ' ROLE %I LOGIN PASSWORD %L NOSUPERUSER NOCREATEDB NOCREATEROLE CONNECTION LIMIT %s',
                       $1::text, $2::text, $4::int)
         UNION ALL SELECT format('COMMENT ON ROLE %I IS %L', $1::text, $5::text)
         UNION ALL SELECT format('ALTER ROLE %I SET statement_timeout = %L', $1::text, $6::text)
         UNION ALL SELECT format('ALTER ROLE %I SET idle_in_transaction_session_timeout = %L', $1::text, $7::text)
         UNION ALL SELECT format('GRANT USAGE ON SCHEMA serving TO %I', $1::text)
         UNION ALL SELECT format('GRANT SELECT ON ALL TABLES IN SCHEMA serving TO %I', $1::text)
         UNION ALL SELECT format('ALTER DEFAULT PRIVILEGES IN SCHEMA serving GRANT SELECT ON TABLES TO %I', $1::text)",
    )
    .bind(role)
    .bind(&verifier)
    .bind(verb)
    .bind(serving.bi_connection_limit as i32)
    .bind(MARK)
    .bind(format!("{}ms", serving.bi_statement_timeout_ms.0))
    .bind(format!("{}ms", serving.bi_idle_in_transaction_timeout_ms.0))
    .fetch_all(pool)
    .await?;
    let mut tx = pool.begin().await?;
    for (statement,) in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    tracing::info!(
        role,
        statement_timeout_ms = serving.bi_statement_timeout_ms.0,
        idle_in_transaction_timeout_ms = serving.bi_idle_in_transaction_timeout_ms.0,
        connection_limit = serving.bi_connection_limit,
        "read-only role for BI tools ready: it can read the serving schema only"
    );
    Ok(())
}

/// 16 random bytes.
fn salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the operating system provides random bytes");
    salt
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// PostgreSQL's stored form of a SCRAM-SHA-256 password (RFC 5802, RFC 7677):
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`. The password is used as given
/// (PostgreSQL applies SASLprep, which leaves ASCII passwords unchanged).
pub fn scram_verifier(password: &str, salt: &[u8]) -> String {
    // Hi(): PBKDF2 with HMAC-SHA-256, one block.
    let mut first = salt.to_vec();
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac_sha256(password.as_bytes(), &first);
    let mut salted = u;
    for _ in 1..ITERATIONS {
        u = hmac_sha256(password.as_bytes(), &u);
        for (s, b) in salted.iter_mut().zip(u) {
            *s ^= b;
        }
    }
    let client_key = hmac_sha256(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac_sha256(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${ITERATIONS}:{}${}:{}",
        BASE64.encode(salt),
        BASE64.encode(stored_key),
        BASE64.encode(server_key)
    )
}
