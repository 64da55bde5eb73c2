//! owping's local test endpoints (protocol.md §3.3, §3.4, §8.2): the sender and receiver
//! threads running the shared engine, the SID the client generates as receiver, the
//! start time, and the clock with the kernel's NTP status.

use owamp::engine::{
    Endpoint, EndpointError, EndpointSetup, ReceiverParams, ReceiverReport, RecordSink,
    SenderParams, SenderReport, StopFlag, run_receiver, run_sender,
};
use owamp::packet::TestKeys;
use owamp::time::{KernelClockStatus, StatusProvider};
use owamp::{Mode, Num64, PacketRecord, Sid, Slot, Timestamp};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::thread::JoinHandle;
use std::time::Duration;

/// The kernel's NTP status (adjtimex, read only) for the S bit and the error estimates
/// (protocol.md §4.3); `sandbox` holds the `unsafe` call.
fn kernel_status() -> Option<KernelClockStatus> {
    sandbox::kernel_clock().map(|k| KernelClockStatus {
        synchronized: k.synchronized,
        esterror_us: k.esterror_us,
        offset_ns: k.offset_ns,
    })
}

pub const CLOCK_STATUS: Option<StatusProvider> = Some(kernel_status);

/// A receiver-generated SID (protocol.md §2.1.4) for a local receiver. Without a
/// random source the last 4 bytes are a constant: the SID still names the session, as
/// the address and timestamp make it unique on this host.
pub fn make_sid(receiver: IpAddr, now: Timestamp) -> Sid {
    let r = owamp::crypto::random_bytes::<4>("SID").unwrap_or([0x5a; 4]);
    Sid::for_receiver(receiver, now, r)
}

/// Start time (protocol.md §8.2): now + max(rtt_bound·(1 + directions) + 1 s, -z).
pub fn start_time(
    now: Timestamp,
    rtt_bound: Num64,
    directions: u32,
    delay_start: f64,
) -> Timestamp {
    let min = rtt_bound
        .fixed_mul(Num64(u64::from(1 + directions) << 32))
        .wrapping_add(Num64(1 << 32));
    let z = Num64::from_secs_f64(delay_start);
    now.wrapping_add(if z > min { z } else { min })
}

/// What a session thread needs to build its format and schedule.
#[derive(Clone)]
pub(crate) struct SessionSetup {
    pub(crate) sid: Sid,
    pub(crate) mode: Mode,
    pub(crate) keys: Option<TestKeys>,
    pub(crate) padding: u32,
    pub(crate) start: Timestamp,
    pub(crate) slots: Vec<Slot>,
    pub(crate) count: u32,
    pub(crate) timeout: Num64,
    pub(crate) debug_offset: f64,
    pub(crate) dscp: Option<u8>,
}

impl SessionSetup {
    /// The engine's set-up of this end, the same as the server's testers'.
    fn open(&self, udp: UdpSocket, peer: SocketAddr) -> std::io::Result<Endpoint> {
        EndpointSetup {
            mode: self.mode,
            keys: self.keys.as_ref(),
            padding: self.padding,
            sid: self.sid,
            start: self.start,
            slots: &self.slots,
            num_packets: self.count,
            dscp: self.dscp,
            clock_status: CLOCK_STATUS,
            debug_offset: self.debug_offset,
        }
        .open(udp, peer)
        .map_err(|e| match e {
            EndpointError::Socket(e) => e,
            e => std::io::Error::other(e.to_string()),
        })
    }
}

pub(crate) type RecvResult = std::io::Result<(ReceiverReport, Vec<PacketRecord>)>;

/// The receive records held in memory, at most four per packet plus 1024. The engine
/// records at most `2 × count + 1024` (duplicates past
/// [`owamp::engine::max_duplicate_records`] are only counted), so this is a backstop
/// that a receiver never reaches: past it records are counted, not kept, and the records
/// already measured stay (the session is not failed for it).
pub(crate) struct BoundedRecords {
    pub(crate) recs: Vec<PacketRecord>,
    max: u64,
    /// Records not kept because the bound was reached.
    pub(crate) refused: u64,
}

impl BoundedRecords {
    pub(crate) fn new(num_packets: u32) -> Self {
        BoundedRecords {
            recs: Vec::new(),
            max: u64::from(num_packets)
                .saturating_mul(4)
                .saturating_add(1024),
            refused: 0,
        }
    }

    /// The records, saying on stderr if some were not kept.
    fn into_records(self) -> Vec<PacketRecord> {
        if self.refused > 0 {
            crate::log(
                crate::opts::Program::Owping,
                &format!(
                    "receiver: {} records past the bound of {} were not kept",
                    self.refused, self.max
                ),
            );
        }
        self.recs
    }
}

impl RecordSink for BoundedRecords {
    fn record(&mut self, r: &PacketRecord) -> std::io::Result<()> {
        if self.recs.len() as u64 >= self.max {
            self.refused += 1;
            return Ok(());
        }
        self.recs.push(*r);
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A line for the user when the local receiver counted duplicates it did not record
/// (a replay of the peer's packets, or in open mode a flood spoofing its address): the
/// duplicate figure of the summary is then that many short.
pub(crate) fn unrecorded_duplicates(
    rx: Option<&std::thread::Result<RecvResult>>,
) -> Option<String> {
    let Some(Ok(Ok((rep, _)))) = rx else {
        return None;
    };
    (rep.duplicates_unrecorded > 0).then(|| {
        format!(
            "\"from\" session: {} duplicates received, {} of them counted but not recorded \
             (more than the bound of one per packet plus 1024: a replay or a flood?)",
            rep.duplicates, rep.duplicates_unrecorded
        )
    })
}

pub(crate) fn spawn_receiver(
    s: SessionSetup,
    udp: UdpSocket,
    peer: SocketAddr,
    stop: StopFlag,
) -> std::io::Result<JoinHandle<RecvResult>> {
    let sink = BoundedRecords::new(s.count);
    spawn_receiver_into(s, udp, peer, stop, sink, None, BoundedRecords::into_records)
}

/// The receiver thread with any record sink (powstream's is shared with the thread
/// that summarises sub-sessions while the session runs); `finish` turns the sink into the thread's result. `done` is
/// raised when the thread ends, so a caller can wait for it on a descriptor instead of
/// polling.
#[allow(clippy::too_many_arguments)]
pub(crate) fn spawn_receiver_into<S, T>(
    s: SessionSetup,
    udp: UdpSocket,
    peer: SocketAddr,
    stop: StopFlag,
    mut sink: S,
    done: Option<StopFlag>,
    finish: fn(S) -> T,
) -> std::io::Result<JoinHandle<std::io::Result<(ReceiverReport, T)>>>
where
    S: RecordSink + Send + 'static,
    T: Send + 'static,
{
    std::thread::Builder::new()
        .name("receiver".into())
        .spawn(move || {
            let _done = DoneOnDrop(done);
            let Endpoint {
                mut socket,
                format,
                mut schedule,
                clock,
            } = s.open(udp, peer)?;
            let mut ctl = stop;
            let rep = run_receiver(
                &mut socket,
                &clock,
                &format,
                &mut schedule,
                ReceiverParams {
                    num_packets: s.count,
                    timeout: s.timeout,
                    expected_src: peer,
                },
                &mut sink,
                &mut ctl,
            )?;
            Ok((rep, finish(sink)))
        })
}

/// Raises its flag when dropped: at the end of a session thread, however it ends.
struct DoneOnDrop(Option<StopFlag>);

impl Drop for DoneOnDrop {
    fn drop(&mut self) {
        if let Some(f) = &self.0 {
            f.stop();
        }
    }
}

pub(crate) fn spawn_sender(
    s: SessionSetup,
    udp: UdpSocket,
    peer: SocketAddr,
    end_delay: Duration,
    stop: StopFlag,
    done: Option<StopFlag>,
) -> std::io::Result<JoinHandle<std::io::Result<SenderReport>>> {
    std::thread::Builder::new()
        .name("sender".into())
        .spawn(move || {
            let _done = DoneOnDrop(done);
            let Endpoint {
                mut socket,
                mut format,
                mut schedule,
                clock,
            } = s.open(udp, peer)?;
            let mut ctl = stop;
            run_sender(
                &mut socket,
                &clock,
                &mut format,
                &mut schedule,
                SenderParams {
                    num_packets: s.count,
                    timeout: s.timeout,
                    end_delay,
                },
                &mut ctl,
            )
        })
}

pub(crate) fn join_sender(
    tx: Option<JoinHandle<std::io::Result<SenderReport>>>,
) -> Option<std::io::Result<SenderReport>> {
    tx.map(|h| {
        h.join()
            .unwrap_or_else(|_| Err(std::io::Error::other("sender thread panicked")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_records_are_bounded_and_kept() {
        let r = PacketRecord {
            seq: 0,
            send_err: owamp::ErrorEstimate::UNSYNC,
            recv_err: owamp::ErrorEstimate::UNSYNC,
            send_ts: Num64(1),
            recv_ts: Num64(2),
            ttl: 255,
        };
        let mut sink = BoundedRecords::new(2);
        for _ in 0..4 * 2 + 1024 + 5 {
            sink.record(&r).unwrap();
        }
        assert_eq!(sink.recs.len(), 4 * 2 + 1024);
        assert_eq!(sink.refused, 5);
    }

    #[test]
    fn start_and_rate() {
        let now = Num64(1000 << 32);
        // rtt 0.5 s, two directions: 1.5 s + 1 s.
        assert_eq!(
            start_time(now, Num64(1 << 31), 2, 0.0),
            Num64((1002 << 32) + (1 << 31))
        );
        assert_eq!(start_time(now, Num64(1 << 31), 2, 10.0), Num64(1010 << 32));
        assert!(
            (owamp::schedule::packets_per_second(&crate::parse::default_slots()) - 10.0).abs()
                < 1e-6
        );
    }
}
