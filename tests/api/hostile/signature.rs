//! The signature headers: the verifier alone, and through the service.

use super::*;

pub(super) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub(super) const NOW: i64 = 1_614_265_330;
pub(super) const TOLERANCE: i64 = 300;

pub(super) fn mac(id: &[u8], timestamp: &[u8], body: &[u8]) -> Vec<u8> {
    let key = STANDARD.decode(&SECRET["whsec_".len()..]).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    for part in [id, b".", timestamp, b".", body] {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Header values of one signature case (raw bytes; those no HTTP header can hold are skipped).
pub(super) struct SignatureCase {
    pub(super) id: Option<Vec<u8>>,
    pub(super) timestamp: Option<Vec<u8>>,
    pub(super) signature: Option<Vec<u8>>,
    pub(super) svix: [bool; 3],
    pub(super) body: Vec<u8>,
}

impl Gen {
    pub(super) fn header_bytes(&mut self) -> Vec<u8> {
        match self.rng.below(4) {
            0 => (0..self.rng.below(40))
                .map(|_| self.rng.next_u64() as u8)
                .collect(),
            1 => self.string().into_bytes(),
            _ => (0..self.rng.below(40))
                .map(|_| b' ' + self.rng.below(95) as u8)
                .collect(),
        }
    }

    /// Header values around `now`: near ones within `spread` seconds of it.
    pub(super) fn signature_case(&mut self, now: i64, spread: i64) -> SignatureCase {
        let id = match self.rng.below(4) {
            0 => self.header_bytes(),
            _ => format!("msg_{}", self.rng.next_u64()).into_bytes(),
        };
        let timestamp = match self.rng.below(8) {
            0 => self.header_bytes(),
            1 => self
                .rng
                .pick(&[
                    "99999999999999999999",
                    "-99999999999999999999",
                    "9223372036854775807",
                    "-9223372036854775808",
                    "9223372036854775808",
                    "-1",
                    "0",
                    "+1614265330",
                    "01614265330",
                    " 1614265330",
                    "1614265330 ",
                    "1614265330.0",
                    "1.6e9",
                    "",
                    "0x6037D5B2",
                ])
                .as_bytes()
                .to_vec(),
            _ => (now + self.rng.below(2 * spread as usize + 1) as i64 - spread)
                .to_string()
                .into_bytes(),
        };
        let body = if self.chance(50) {
            self.header_bytes()
        } else {
            serde_json::to_vec(&seed()).unwrap()
        };
        let mut signature: Vec<u8> = match self.rng.below(6) {
            0 => self.header_bytes(),
            1 => b"v1,".to_vec(),
            2 => format!("v1,{}", String::from_utf8_lossy(&self.header_bytes())).into_bytes(),
            3 => {
                // Thousands of entries.
                let n = self.rng.pick(&[1_000, 5_000]);
                let entry = self.rng.pick(&[
                    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                    "v1,",
                    "v2,abc",
                    ",",
                    "v1,,,,",
                ]);
                vec![entry; n].join(" ").into_bytes()
            }
            4 => {
                let fake: Vec<u8> = (0..32).map(|_| self.rng.next_u64() as u8).collect();
                format!("v1,{}", STANDARD.encode(fake)).into_bytes()
            }
            _ => {
                // The right MAC, possibly damaged.
                let mut sig = format!("v1,{}", STANDARD.encode(mac(&id, &timestamp, &body)));
                match self.rng.below(5) {
                    0 => sig = sig.replacen("v1,", "v1, ", 1),
                    1 => sig = sig.to_lowercase(),
                    2 => {
                        sig.pop();
                    }
                    3 => sig = sig.replacen("v1", "V1", 1),
                    _ => {}
                }
                sig.into_bytes()
            }
        };
        if self.chance(20) {
            // Another, correct entry among the rest.
            signature.extend_from_slice(b" v1,");
            signature.extend_from_slice(STANDARD.encode(mac(&id, &timestamp, &body)).as_bytes());
        }
        let mut headers = [Some(id), Some(timestamp), Some(signature)];
        for h in &mut headers {
            if self.chance(5) {
                *h = None;
            }
        }
        let [id, timestamp, signature] = headers;
        SignatureCase {
            id,
            timestamp,
            signature,
            // Mostly one set of names (a third of them Svix's), sometimes names of both.
            svix: if self.chance(15) {
                [self.chance(50), self.chance(50), self.chance(50)]
            } else {
                [self.chance(30); 3]
            },
            body,
        }
    }
}

impl SignatureCase {
    pub(super) fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let values = [&self.id, &self.timestamp, &self.signature];
        for (i, name) in ["id", "timestamp", "signature"].into_iter().enumerate() {
            let Some(value) = values[i] else { continue };
            let Ok(value) = HeaderValue::from_bytes(value) else {
                continue; // not a header value: no request can carry it
            };
            let prefix = if self.svix[i] { "svix" } else { "webhook" };
            headers.insert(
                HeaderName::try_from(format!("{prefix}-{name}")).unwrap(),
                value,
            );
        }
        headers
    }

    /// Whether a correct signature, within the tolerance of `now`, reaches the verifier in one
    /// set of header names (`webhook-…` or `svix-…`; never some of each).
    pub(super) fn acceptable(&self, headers: &HeaderMap, now: i64) -> bool {
        ["webhook", "svix"]
            .into_iter()
            .any(|prefix| self.acceptable_as(prefix, headers, now))
    }

    fn acceptable_as(&self, prefix: &str, headers: &HeaderMap, now: i64) -> bool {
        let text = |name: &str| {
            headers
                .get(format!("{prefix}-{name}"))
                .and_then(|v| v.to_str().ok())
        };
        let (Some(id), Some(timestamp), Some(signatures)) =
            (text("id"), text("timestamp"), text("signature"))
        else {
            return false;
        };
        let in_time = timestamp
            .parse::<i64>()
            .is_ok_and(|t| (now - TOLERANCE..=now + TOLERANCE).contains(&t));
        let expected = mac(id.as_bytes(), timestamp.as_bytes(), &self.body);
        in_time
            && signatures.split(' ').any(|entry| {
                entry
                    .strip_prefix("v1,")
                    .and_then(|b64| STANDARD.decode(b64).ok())
                    .is_some_and(|sig| sig == expected)
            })
    }
}

/// The signature-header parser: arbitrary header values never panic, refuse with 401 only, and
/// `Ok(true)` comes exactly when a correct signature within the tolerance is present.
#[test]
fn the_signature_verifier_survives_hostile_headers_and_accepts_only_correct_signatures() {
    let verifier = Verifier::new(Some(&SECRET.to_owned().into()), TOLERANCE as u64).unwrap();
    let now = DateTime::from_timestamp(NOW, 0).unwrap();
    let (mut accepted, mut refused) = (0, 0);
    let cases = SIGNATURE_CASES * scale();
    for i in 0..cases {
        let seed = case_seed(3, i);
        let case = Gen::new(seed).signature_case(NOW, 400);
        let headers = case.headers();
        let result = catch_unwind(AssertUnwindSafe(|| {
            verifier.verify(&headers, &case.body, now)
        }))
        .unwrap_or_else(|_| panic!("case {i} (seed {seed}): verify panicked on {headers:?}"));
        let acceptable = case.acceptable(&headers, NOW);
        match result {
            Ok(true) if acceptable => accepted += 1,
            Err(Error::BadSignature(detail)) if !acceptable => {
                assert!(!detail.contains("MfKQ9r8G"), "the secret leaked: {detail}");
                refused += 1;
            }
            other => panic!(
                "case {i} (seed {seed}): verify gave {other:?}, expected {} for {headers:?} \
                 and body {}",
                if acceptable { "Ok(true)" } else { "a 401" },
                show(&case.body)
            ),
        }
    }
    eprintln!("signature verifier: {cases} cases, {accepted} accepted, {refused} refused");
    assert!(accepted > cases / 20 && refused > cases / 2);
}

/// Hostile signature headers through the service (hyper's header parsing, then the
/// verifier): 401 problem answers, or 201/200 for a correctly signed delivery.
#[tokio::test]
async fn the_service_answers_hostile_signature_headers_with_401_or_2xx() {
    let app = spawn_app_with(|c| {
        c.webhook_secrets = Some(SECRET.to_owned().into());
        c.signature_tolerance_secs = TOLERANCE as u64;
    })
    .await;
    let mut counts: HashMap<u16, usize> = HashMap::new();
    for i in 0..HTTP_SIGNATURE_CASES * scale() {
        let seed = case_seed(4, i);
        let mut g = Gen::new(seed);
        // Near timestamps well inside the tolerance of the service's clock, which runs on.
        let now = Utc::now().timestamp();
        let mut case = g.signature_case(now, TOLERANCE - 100);
        if g.chance(50) {
            // A unique envelope, so that an accepted delivery is a 201.
            case.body = serde_json::to_vec(&g.envelope(&format!("sig-{seed}"))).unwrap();
            if g.chance(50) {
                let (id, ts) = (case.id.clone(), case.timestamp.clone());
                let sig = STANDARD.encode(mac(
                    &id.unwrap_or_default(),
                    &ts.unwrap_or_default(),
                    &case.body,
                ));
                case.signature = Some(format!("v1,{sig}").into_bytes());
            }
        }
        let headers = case.headers();
        let mut request = app
            .client
            .post(format!("{}/webhooks/calry", app.address))
            .header("content-type", "application/json")
            .body(case.body.clone());
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        let what = format!("signature HTTP case {i} (seed {seed}) with {headers:?}");
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
        let status = response.status().as_u16();
        *counts.entry(status).or_default() += 1;
        // hyper trims white space around header values before the service sees them.
        let trimmed: HeaderMap = headers
            .iter()
            .map(|(name, value)| {
                let bytes = value.as_bytes().trim_ascii();
                (name.clone(), HeaderValue::from_bytes(bytes).unwrap())
            })
            .collect();
        let mut allowed = vec![401];
        if case.acceptable(&trimmed, now) {
            // A correct signature: stored, or refused as a body (400/422) or a conflict.
            allowed = vec![201, 200, 400, 409, 422];
        }
        assert!(allowed.contains(&status), "{what}: answered {status}");
        if status >= 400 {
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json",
                "{what}"
            );
        }
    }
    eprintln!("signature over HTTP: answers {counts:?}");
    assert!(counts.get(&401).copied().unwrap_or(0) > 0);
    assert!(counts.get(&201).copied().unwrap_or(0) > 0, "{counts:?}");
}
