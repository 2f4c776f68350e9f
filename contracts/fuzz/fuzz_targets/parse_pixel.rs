//! Fuzzes `GET /t.gif` query parsing: any parameters must give an event or an error, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let pairs: Vec<(&str, &str)> =
        text.split('&').map(|kv| kv.split_once('=').unwrap_or((kv, ""))).collect();
    let _ = flywheel_contracts::events::parse_pixel(pairs);
});
