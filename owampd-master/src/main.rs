//! The owampd master: the small privileged listener
#![forbid(unsafe_code)]

fn main() {
    eprintln!("owampd: not yet implemented");
    std::process::exit(1);
}
