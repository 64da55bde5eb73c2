//! owfetch: fetch stored sessions from an OWAMP server by SID (protocol.md §8.6).
#![forbid(unsafe_code)]

fn main() {
    let intr = owping::signals::Interrupt::install();
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(owping::tools::owfetch_main(&args, &intr));
}
