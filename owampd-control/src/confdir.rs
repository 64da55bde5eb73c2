//! The process's [`Directory`] over the parsed configuration files (`config::Limits`,
//! `config::Pfs`), as the master sends them in `Configure`.

use crate::directory::Directory;
use crate::policy::ClassIdx;
use config::{Limits, Pfs};
use std::net::IpAddr;

pub struct ConfigDirectory {
    pub limits: Limits,
    pub pfs: Pfs,
}

impl Directory for ConfigDirectory {
    fn class_for_address(&self, addr: IpAddr) -> ClassIdx {
        self.limits.class_for_address(addr).0
    }
    fn class_for_user(&self, user: &str, addr: IpAddr) -> ClassIdx {
        self.limits.class_for_user(user, addr).0
    }
    fn passphrase(&self, user: &str) -> Option<Vec<u8>> {
        self.pfs.get(user).map(<[u8]>::to_vec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ClassTree;
    use std::path::Path;

    #[test]
    fn shipped_example_tree() {
        let pfs = Pfs::parse("alice 74657374\n", Path::new("t.pfs")).unwrap();
        let text = "limit root with disk=0,bandwidth=0,delete_on_fetch=on\n\
                    limit regular with parent=root,disk=10G,bandwidth=20M\n\
                    limit alice with parent=regular,bandwidth=1M\n\
                    assign default regular\n";
        let limits = Limits::parse(text, Path::new("t.limits"), Some(&pfs)).unwrap();
        let tree = ClassTree::from_limits(&limits).unwrap();
        let regular = tree.by_name("regular").unwrap();
        assert_eq!(tree.chain_names(regular).unwrap(), vec!["root", "regular"]);
        let c = tree.get(regular).unwrap();
        assert_eq!((c.disk, c.bandwidth), (10_000_000_000, 20_000_000));
        assert!(c.delete_on_fetch, "inherited from root");
        let dir = ConfigDirectory { limits, pfs };
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(dir.class_for_address(ip), regular);
        // The reference's quirk: a class named like the user wins.
        assert_eq!(
            dir.class_for_user("alice", ip),
            tree.by_name("alice").unwrap()
        );
        assert_eq!(dir.passphrase("alice"), Some(b"test".to_vec()));
        assert_eq!(dir.passphrase("bob"), None);
    }
}
