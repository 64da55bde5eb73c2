//! powstream: continuous one-way latency measurements against an OWAMP server.
#![forbid(unsafe_code)]

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(owping::powstream::powstream_main(&args));
}
