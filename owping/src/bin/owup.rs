//! owup

fn main() {
    eprintln!("owup: not yet implemented");
    std::process::exit(1);
}
