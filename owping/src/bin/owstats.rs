//! owstats

fn main() {
    eprintln!("owstats: not yet implemented");
    std::process::exit(1);
}
