//! One owampd test session: a sender or a receiver
#![forbid(unsafe_code)]

fn main() {
    eprintln!("owampd-tester: not yet implemented");
    std::process::exit(1);
}
