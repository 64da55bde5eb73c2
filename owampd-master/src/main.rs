//! The owampd master: the small privileged listener

fn main() {
    eprintln!("owampd: not yet implemented");
    std::process::exit(1);
}
