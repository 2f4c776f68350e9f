//! Fuzzes `POST /v1/collect` body parsing: any bytes must give events or an error, never a
//! panic, and every accepted event must parse again from its own JSON.
#![no_main]

use flywheel_contracts::events::{MAX_BATCH_EVENTS, parse_batch, parse_one, to_json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(events) = parse_batch(data) {
        assert!(!events.is_empty() && events.len() <= MAX_BATCH_EVENTS);
        for event in events {
            let text = to_json(&event);
            assert!(parse_one(&text, "e").is_ok(), "an accepted event re-parses: {text}");
        }
    }
});
