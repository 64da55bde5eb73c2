//! The owampd control process: OWAMP-Control, policy, data store

fn main() {
    eprintln!("owampd-control: not yet implemented");
    std::process::exit(1);
}
