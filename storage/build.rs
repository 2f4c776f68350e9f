//! Rebuilds this crate when a migration is added or changed: `sqlx::migrate!` embeds the
//! `migrations/` directory at compile time, and on stable Rust it cannot tell cargo to watch it,
//! so without this a new migration could be missing from a binary built after it was added.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
