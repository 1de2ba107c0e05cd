//! The deliveries: ids, bodies, signatures.

use crate::*;

/// A small, fast generator (xorshift64*) per worker: no locking, no allocation.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(splitmix(seed) | 1)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
}

pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Odd multiplier that scatters consecutive keys over the id space (random-looking ids, like
/// Calry's UUIDv4, so that inserts land all over the primary-key index as real traffic does);
/// being odd, it is invertible modulo 2^64, so every stored id maps back to its (worker, seq).
pub(crate) const SCATTER: u64 = 0x9e37_79b9_7f4a_7c15;

pub(crate) fn scatter_inverse() -> u64 {
    // Newton's iteration for the inverse modulo 2^64 (each step doubles the correct bits).
    let mut inv = SCATTER;
    for _ in 0..6 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(SCATTER.wrapping_mul(inv)));
    }
    inv
}

/// The ids of one run: UUID-shaped and random-looking from their first digit, as Calry's UUIDv4
/// are, so that they land all over the hook-id indexes of a large store; the run's tag (8 hex
/// digits) sits at a fixed place near the end, `xxxxxxxx-xxxx-4xxx-8xxx-<tag>xxxx`, so that a
/// received id tells which run (or phase) sent it.
#[derive(Clone, Copy)]
pub(crate) struct Ids {
    pub(crate) run: u32,
    pub(crate) inverse: u64,
}

/// Where the run's tag sits in an id.
const TAG: std::ops::Range<usize> = 24..32;

impl Ids {
    pub(crate) fn key(worker: u32, seq: u64) -> u64 {
        (u64::from(worker) << 40) | seq
    }

    pub(crate) fn hook_id(&self, worker: u32, seq: u64) -> String {
        let x = Ids::key(worker, seq).wrapping_mul(SCATTER);
        let check = splitmix(x ^ u64::from(self.run));
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:08x}{:04x}",
            x >> 32,
            (x >> 16) & 0xffff,
            (x >> 4) & 0xfff,
            ((x & 0xf) << 8) | (check & 0xff),
            self.run,
            (check >> 8) & 0xffff
        )
    }

    /// `(worker, seq)` of an id this run generated, `None` for anything else.
    pub(crate) fn parse(&self, id: &str) -> Option<(u32, u64)> {
        let b = id.as_bytes();
        if b.len() != 36 || !self.owns(b) || b[14] != b'4' || b[19] != b'8' {
            return None;
        }
        let hex = |s: &str| u64::from_str_radix(s, 16).ok();
        let x = (hex(id.get(0..8)?)? << 32)
            | (hex(id.get(9..13)?)? << 16)
            | (hex(id.get(15..18)?)? << 4)
            | (hex(id.get(20..23)?)? >> 8);
        let key = x.wrapping_mul(self.inverse);
        let (worker, seq) = ((key >> 40) as u32, key & ((1 << 40) - 1));
        (self.hook_id(worker, seq) == id).then_some((worker, seq))
    }

    /// Whether `id` carries this run's tag.
    pub(crate) fn owns(&self, id: &[u8]) -> bool {
        id.get(TAG) == Some(self.tag().as_bytes())
    }

    /// The run's tag, as it appears in its ids.
    pub(crate) fn tag(&self) -> String {
        format!("{:08x}", self.run)
    }

    /// Every id that workers sending `sent[w]` deliveries each generated.
    pub(crate) fn all(&self, sent: impl IntoIterator<Item = usize>) -> Vec<String> {
        let mut ids = Vec::new();
        for (w, n) in sent.into_iter().enumerate() {
            ids.extend((0..n as u64).map(|s| self.hook_id(w as u32, s)));
        }
        ids
    }
}

/// Workspace `w` as a UUID-shaped id; `bench/pgbench-ingest.sql` builds the same strings.
pub(crate) fn workspace_id(w: u64) -> String {
    format!("6fd2160c-0000-4000-8000-{w:012x}")
}

/// Account `a` of workspace `w`; `bench/pgbench-ingest.sql` builds the same strings.
pub(crate) fn account_id(w: u64, a: u64) -> String {
    format!("4a905074-{a:04x}-4000-8000-{w:012x}")
}

/// The body of delivery (worker, seq): a function of the id and the occurrence time only, so a
/// redelivery sends exactly the same bytes. Shape and size as Calry's example (SPEC §2).
pub(crate) fn body(
    ids: &Ids,
    args: &IngestArgs,
    worker: u32,
    seq: u64,
    occurred_ms: i64,
) -> String {
    let mut h = splitmix(Ids::key(worker, seq) ^ 0x5eed);
    let w = workspace_of(worker, seq, args.workspaces);
    h = splitmix(h);
    let a = h % args.accounts.max(1);
    h = splitmix(h);
    let event_type = KNOWN_TYPES[(h % KNOWN_TYPES.len() as u64) as usize];
    let result = if event_type == "sync.error" {
        "FAILURE"
    } else {
        "SUCCESS"
    };
    let at = chrono::DateTime::from_timestamp_millis(occurred_ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ");
    format!(
        r#"{{"hook":{{"id":"{id}","eventType":"{event_type}","timeStamp":"{at}","source":"CALRY_WEBHOOK"}},"data":{{"integrationAccountId":"{account}","workspaceId":"{workspace}","result":"{result}"}}}}"#,
        id = ids.hook_id(worker, seq),
        account = account_id(w, a),
        workspace = workspace_id(w),
    )
}

/// The workspace number (see [`workspace_id`]) of delivery (worker, seq) among `workspaces`:
/// uniform, and what [`body`] puts in the delivery.
pub(crate) fn workspace_of(worker: u32, seq: u64, workspaces: u64) -> u64 {
    splitmix(Ids::key(worker, seq) ^ 0x5eed) % workspaces.max(1)
}

/// `v1,<base64>` of Standard Webhooks: HMAC-SHA256 of `{id}.{timestamp}.{body}`, keyed by the
/// base64-decoded part of the secret after `whsec_`.
pub(crate) fn sign(key: &[u8], id: &str, timestamp: u64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

pub(crate) fn secret_key(secret: &str) -> Result<Vec<u8>, BoxError> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    Ok(BASE64
        .decode(encoded)
        .map_err(|e| format!("--secret is not whsec_<base64>: {e}"))?)
}

pub(crate) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
