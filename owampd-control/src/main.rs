//! The owampd control process: OWAMP-Control, policy, data store
#![forbid(unsafe_code)]

fn main() {
    eprintln!("owampd-control: not yet implemented");
    std::process::exit(1);
}
