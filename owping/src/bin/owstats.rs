//! owstats: statistics of saved `.owp` files (protocol.md §8.6).
#![forbid(unsafe_code)]

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(owping::tools::owstats_main(&args));
}
