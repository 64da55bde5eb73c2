//! Who a peer is: its limit class and, in the secure modes, its passphrase (protocol.md §7.5,
//! §7.10). A trait so the connection state machine can be tested without config files;
//! the process implements it over `config::Limits` and `config::Pfs`.

use crate::policy::ClassIdx;
use std::net::IpAddr;

pub trait Directory: Send + Sync {
    /// Open mode (and the fallback): longest-prefix `assign net`, else `assign default`,
    /// else the root class.
    fn class_for_address(&self, addr: IpAddr) -> ClassIdx;
    /// Authenticated/encrypted modes: `assign user`, overridden by a class named like the
    /// user (the reference's quirk), else the address rules.
    fn class_for_user(&self, user: &str, addr: IpAddr) -> ClassIdx;
    /// The hex-decoded `.pfs` passphrase of `user`.
    fn passphrase(&self, user: &str) -> Option<Vec<u8>>;
}

/// Everyone in the root class, with the given users (tests, and no limits file).
#[derive(Clone, Debug, Default)]
pub struct SimpleDirectory {
    pub users: Vec<(String, Vec<u8>)>,
}

impl Directory for SimpleDirectory {
    fn class_for_address(&self, _addr: IpAddr) -> ClassIdx {
        0
    }
    fn class_for_user(&self, _user: &str, _addr: IpAddr) -> ClassIdx {
        0
    }
    fn passphrase(&self, user: &str) -> Option<Vec<u8>> {
        self.users
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, p)| p.clone())
    }
}
