//! owping: one-way latency tests against an OWAMP server (protocol.md §8).
#![forbid(unsafe_code)]

fn main() {
    let intr = owping::signals::Interrupt::install();
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(owping::ping::owping_main(&args, &intr));
}
