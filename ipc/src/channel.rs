//! One internal message per `SOCK_SEQPACKET` datagram (docs/processes.md "IPC").
//!
//! SEQPACKET keeps message boundaries, so no framing is needed: a datagram is one encoded
//! message, and the fds that ride with it (`SCM_RIGHTS`) arrive with exactly that message.
//! Every message is bounded to [`MAX_MESSAGE`] bytes before it is decoded.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use serde::{Serialize, de::DeserializeOwned};

use crate::codec;
use crate::error::IpcError;

/// The largest encoded message, in bytes (docs/processes.md "IPC": every message is bounded to 64 KiB).
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The most fds one message may carry. Extras that a peer sends are closed on receipt.
/// (A tester needs 3: IPC, test socket, data file; nothing sends more.)
pub const MAX_FDS: usize = 4;

/// Linux's SCM_MAX_FD: the kernel never passes more in one message. Sizing the control
/// buffer for it means the kernel never truncates fds (MSG_CTRUNC), so none is lost
/// half-installed in our table; we close the extras above [`MAX_FDS`] ourselves.
const SCM_MAX_FD: usize = 253;

/// A message and the fds that arrived with it (in the order the sender gave them).
#[derive(Debug)]
pub struct Received<T> {
    pub msg: T,
    pub fds: Vec<OwnedFd>,
}

/// One end of an internal channel. Close-on-exec; `spawn` moves it to a fixed fd in a child.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// A connected pair of ends (`socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC)`).
    pub fn pair() -> Result<(Channel, Channel), IpcError> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|source| IpcError::Sys {
            op: "socketpair(AF_UNIX, SOCK_SEQPACKET)",
            source,
        })?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// Wrap an inherited end (see [`crate::fds::take_inherited`]).
    pub fn from_owned(fd: OwnedFd) -> Channel {
        Channel { fd }
    }

    /// Give the fd back (e.g. to pass it to a child with [`crate::spawn::spawn_child`]).
    pub fn into_owned(self) -> OwnedFd {
        self.fd
    }

    /// Switch `O_NONBLOCK`: for tokio's `AsyncFd` or a poll loop.
    pub fn set_nonblocking(&self, nonblocking: bool) -> Result<(), IpcError> {
        let sys = |source| IpcError::Sys {
            op: "fcntl(O_NONBLOCK)",
            source,
        };
        let flags = fcntl(&self.fd, FcntlArg::F_GETFL).map_err(sys)?;
        let mut flags = OFlag::from_bits_truncate(flags);
        flags.set(OFlag::O_NONBLOCK, nonblocking);
        fcntl(&self.fd, FcntlArg::F_SETFL(flags)).map_err(sys)?;
        Ok(())
    }

    /// Send one message with up to [`MAX_FDS`] fds. The fds are duplicated into the peer
    /// by the kernel; the caller still owns (and should usually close) its copies.
    ///
    /// On a non-blocking channel a full socket buffer gives `Sys { source: EAGAIN }`.
    pub fn send<T: Serialize>(&self, msg: &T, fds: &[BorrowedFd<'_>]) -> Result<(), IpcError> {
        if fds.len() > MAX_FDS {
            return Err(IpcError::TooManyFds {
                count: fds.len(),
                max: MAX_FDS,
            });
        }
        let bytes = codec::encode(msg)?;
        if bytes.len() > MAX_MESSAGE {
            return Err(IpcError::TooLarge {
                len: bytes.len(),
                max: MAX_MESSAGE,
            });
        }
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let rights = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
        let iov = [IoSlice::new(&bytes)];
        // MSG_NOSIGNAL: a dead peer is an error to handle, not a SIGPIPE.
        loop {
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &iov,
                cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(Errno::EPIPE) | Err(Errno::ECONNRESET) => return Err(IpcError::Closed),
                Err(source) => {
                    return Err(IpcError::Sys {
                        op: "sendmsg",
                        source,
                    });
                }
            }
        }
    }

    /// Receive one message, blocking unless the channel is non-blocking.
    /// The peer closing its end is [`IpcError::Closed`].
    pub fn recv<T: DeserializeOwned>(&self) -> Result<Received<T>, IpcError> {
        match self.recv_flags(MsgFlags::empty())? {
            Some(r) => Ok(r),
            // Only reachable on a non-blocking channel.
            None => Err(IpcError::Sys {
                op: "recvmsg",
                source: Errno::EAGAIN,
            }),
        }
    }

    /// Receive one message if one is waiting: `Ok(None)` when none is (EAGAIN), whatever
    /// the channel's blocking mode.
    pub fn try_recv<T: DeserializeOwned>(&self) -> Result<Option<Received<T>>, IpcError> {
        self.recv_flags(MsgFlags::MSG_DONTWAIT)
    }

    fn recv_flags<T: DeserializeOwned>(
        &self,
        extra: MsgFlags,
    ) -> Result<Option<Received<T>>, IpcError> {
        // The buffer is the message's own size, learnt by a peek: a process holds one
        // short allocation per message instead of a 64 KiB buffer per call (a tester's
        // whole heap was mostly that).
        let Some(size) = self.next_len(extra)? else {
            return Ok(None);
        };
        let mut buf = vec![0u8; size.clamp(1, MAX_MESSAGE)];
        let mut cmsg_buf = nix::cmsg_space!([RawFd; SCM_MAX_FD]);
        let mut reset_seen = false;
        let (len, flags, fds) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let res = recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg_buf),
                MsgFlags::MSG_CMSG_CLOEXEC | extra,
            );
            match res {
                Ok(m) => {
                    // Take ownership of every received fd first, so that whatever we
                    // decide about the message, none leaks.
                    let mut fds = Vec::new();
                    if let Ok(cmsgs) = m.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::ScmRights(raws) = c {
                                for raw in raws {
                                    // SAFETY: the kernel has just installed `raw` in our fd
                                    // table for this message (SCM_RIGHTS); nothing else in
                                    // this process knows it, so we are its only owner.
                                    fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
                                }
                            }
                        }
                    }
                    break (m.bytes, m.flags, fds);
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Ok(None),
                // See `next_len`: once reported, the reset is cleared and what the peer
                // queued before it went comes next.
                Err(Errno::ECONNRESET) if !reset_seen => reset_seen = true,
                Err(Errno::ECONNRESET) => return Err(IpcError::Closed),
                Err(source) => {
                    return Err(IpcError::Sys {
                        op: "recvmsg",
                        source,
                    });
                }
            }
        };
        if flags.contains(MsgFlags::MSG_TRUNC) {
            return Err(IpcError::Truncated {
                what: "message over 64 KiB",
            });
        }
        if flags.contains(MsgFlags::MSG_CTRUNC) {
            return Err(IpcError::Truncated {
                what: "control data",
            });
        }
        // Every encoded message is at least one byte (an enum tag), so an empty
        // datagram is the SEQPACKET end-of-file.
        if len == 0 && fds.is_empty() {
            return Err(IpcError::Closed);
        }
        let mut fds = fds;
        // Closing the extras is dropping them.
        fds.truncate(MAX_FDS);
        let bytes = buf.get(..len).ok_or(IpcError::Truncated {
            what: "length beyond buffer",
        })?;
        let msg = codec::decode(bytes)?;
        Ok(Some(Received { msg, fds }))
    }
}

impl Channel {
    /// The length of the next datagram without taking it (`MSG_PEEK | MSG_TRUNC` into an
    /// empty buffer: the kernel returns the real length and leaves the datagram, and any
    /// fds riding with it, queued). `None` when nothing is queued on a non-blocking read.
    ///
    /// A peer that closes its end with our messages still unread in its queue leaves ours
    /// flagged ECONNRESET (the kernel's unix_release_sock), and the next receive reports
    /// that flag *before* any message the peer queued for us: a tester that sends its final
    /// report and exits while control's Stop is still unread in its queue. Reporting the
    /// error clears it, so one ECONNRESET is read past: the queued messages follow, then
    /// the end of file.
    fn next_len(&self, extra: MsgFlags) -> Result<Option<usize>, IpcError> {
        let mut reset_seen = false;
        loop {
            match nix::sys::socket::recv(
                self.fd.as_raw_fd(),
                &mut [],
                MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC | extra,
            ) {
                Ok(n) => return Ok(Some(n)),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Ok(None),
                Err(Errno::ECONNRESET) if !reset_seen => reset_seen = true,
                Err(Errno::ECONNRESET) => return Err(IpcError::Closed),
                Err(source) => {
                    return Err(IpcError::Sys {
                        op: "recv(MSG_PEEK)",
                        source,
                    });
                }
            }
        }
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Channel {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
