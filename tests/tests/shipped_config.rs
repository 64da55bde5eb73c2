//! The configuration the server package installs (`contrib/etc/`) is what perfSONAR's
//! owamp-server package installs: the same keywords and values, the same classes with
//! the same limits, read here by owampd's own parsers.

use config::{Facility, Limits, RunAs, ServerConf};
use std::path::{Path, PathBuf};

fn shipped(name: &str) -> (PathBuf, String) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib/etc")
        .join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (p, text)
}

#[test]
fn owamp_server_conf_has_perfsonars_settings() {
    let (p, text) = shipped("owamp-server.conf");
    let c = ServerConf::parse(&text, &p).unwrap();
    assert_eq!(c.user, Some(RunAs::Name("owamp".into())));
    assert_eq!(c.group, Some(RunAs::Name("owamp".into())));
    assert!(c.verbose && c.loglocation && !c.rootfolly);
    assert_eq!(c.facility, Facility::parse("local5").unwrap());
    assert_eq!(c.vardir.as_deref(), Some(Path::new("/var/run")));
    assert_eq!(c.datadir.as_deref(), Some(Path::new("/var/lib/owamp")));
    assert_eq!((c.testports.low, c.testports.high), (8760, 9960));
    assert_eq!(c.diskfudge, 3.0);
    // Everything else at the defaults perfSONAR's file leaves commented out.
    let d = ServerConf::default();
    assert_eq!(c.authmode, d.authmode);
    assert_eq!(c.srcnode, d.srcnode);
    assert_eq!(c.loglevel, d.loglevel);
    assert_eq!(
        (c.dieby, c.controltimeout, c.maxcontrolsessions),
        (d.dieby, d.controltimeout, d.maxcontrolsessions)
    );
    assert_eq!(c.enddelay, d.enddelay);
}

#[test]
fn owamp_server_limits_has_perfsonars_classes() {
    let (p, text) = shipped("owamp-server.limits");
    let l = Limits::parse(&text, &p, None).unwrap();
    let names: Vec<&str> = l.classes().map(|(_, c)| c.name.as_str()).collect();
    assert_eq!(names, ["root", "regular"]);
    let root = l.class(l.by_name("root").unwrap());
    assert_eq!(root.parent, None);
    assert_eq!((root.disk, root.bandwidth), (0, 0));
    assert!(root.delete_on_fetch && root.allow_open_mode);
    let regular_id = l.by_name("regular").unwrap();
    let regular = l.class(regular_id);
    assert_eq!(regular.parent, Some(l.by_name("root").unwrap()));
    assert_eq!(regular.disk, 10_000_000_000);
    assert_eq!(regular.bandwidth, 20_000_000);
    assert_eq!(l.default_class(), Some(regular_id));
    assert!(l.net_rules().is_empty() && l.user_rules().next().is_none());
}
