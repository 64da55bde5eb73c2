//! The summaries powstream publishes: the `.sum` text is the machine summary
//! ("SUMMARY 3.00", owstats `-M`) of a session or `-N` sub-session, with the host names
//! stats.c finds for the addresses (looked up once per address, not once per file), and
//! with `--json` the same summary as owping's JSON document plus where it came from.

use crate::output::{OutputError, SampleCursor, SessionData, endpoints, host_name};
use owamp::report::{json_summary, machine_summary};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::IpAddr;

/// Host names by address, as stats.c prints them (getnameinfo, flags 0).
#[derive(Default)]
pub struct HostNames(HashMap<IpAddr, String>);

impl HostNames {
    fn name(&mut self, addr: IpAddr, port: u16) -> String {
        self.0
            .entry(addr)
            .or_insert_with(|| host_name(addr, port))
            .clone()
    }

    /// The names for a session's two ends.
    pub fn of(&mut self, data: &SessionData) -> crate::output::Names {
        let f = data.session.fields();
        crate::output::Names {
            from: Some(self.name(f.sender_addr, f.sender_port)),
            to: Some(self.name(f.receiver_addr, f.receiver_port)),
        }
    }
}

/// Which summary a document is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// `-N` sub-session `index` (0-based), preliminary: computed before the sender's
    /// Stop-Sessions could say what it skipped.
    SubSession(u32),
    /// The whole session, after its Stop-Sessions.
    Session,
}

/// One summary, ready to write.
pub struct Summary {
    pub text: String,
    pub json: Value,
}

/// Summarises packets `first..last` of `data`, continuing `cursor`.
#[allow(clippy::too_many_arguments)]
pub fn summarize(
    cursor: &mut SampleCursor,
    data: &SessionData,
    names: &mut HostNames,
    first: u32,
    last: u32,
    bucket_width: f64,
    unix_ts: bool,
    finished: u32,
    part: Part,
) -> Result<Summary, OutputError> {
    let stats = cursor.next(data, first, Some(last), bucket_width, None)?;
    let ends = endpoints(&data.session, &names.of(data));
    let text = machine_summary(&stats, &data.session, finished, &ends, unix_ts);
    let mut doc = json_summary(&stats, &data.session, finished, &ends, &[], None);
    if let Some(obj) = doc.as_object_mut() {
        match part {
            Part::SubSession(i) => {
                obj.insert("kind".into(), json!("sub-session"));
                obj.insert("index".into(), json!(i));
            }
            Part::Session => {
                obj.insert("kind".into(), json!("session"));
            }
        }
    }
    Ok(Summary { text, json: doc })
}
