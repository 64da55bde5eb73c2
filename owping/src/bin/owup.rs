//! owup: when did an OWAMP server start (protocol.md §8.6).
#![forbid(unsafe_code)]

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(owping::tools::owup_main(&args));
}
