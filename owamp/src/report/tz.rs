//! Local time without libc: the zone `localtime` would use, read from TZif data
//! (RFC 8536) with safe code. See the limitations in the `report` module doc.

/// A time zone for printing local times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeZone {
    Utc,
    /// A fixed offset east of UTC, in seconds.
    Fixed(i64),
    /// Transitions from a TZif file: (Unix time, offset from then on), sorted, and the
    /// offset before the first transition.
    Table {
        transitions: Vec<(i64, i64)>,
        initial: i64,
    },
}

fn tzif_u32(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

impl TimeZone {
    /// The zone `localtime` would use: `TZ` (a zone name, or a path with or without a
    /// leading ':'), else `/etc/localtime`; UTC when `TZ` is empty or nothing can be
    /// read.
    pub fn from_env() -> TimeZone {
        let path = match std::env::var("TZ") {
            Ok(tz) if tz.is_empty() => return TimeZone::Utc,
            Ok(tz) => {
                let name = tz.strip_prefix(':').unwrap_or(&tz).to_string();
                if name.starts_with('/') {
                    name
                } else if name.split('/').any(|c| c == "..") {
                    return TimeZone::Utc;
                } else {
                    format!("/usr/share/zoneinfo/{name}")
                }
            }
            Err(_) => "/etc/localtime".to_string(),
        };
        std::fs::read(&path)
            .ok()
            .and_then(|b| TimeZone::from_tzif(&b))
            .unwrap_or(TimeZone::Utc)
    }

    /// Parse a TZif file (RFC 8536, versions 1–4; the 64-bit block when present).
    /// Every count is checked against the data length; None on any inconsistency.
    pub fn from_tzif(b: &[u8]) -> Option<TimeZone> {
        if b.get(..4)? != b"TZif" {
            return None;
        }
        let version = *b.get(4)?;
        let counts = |at: usize| -> Option<[usize; 6]> {
            let mut c = [0usize; 6];
            for (i, v) in c.iter_mut().enumerate() {
                *v = tzif_u32(b, at + 20 + 4 * i)? as usize;
            }
            Some(c)
        };
        let block_len = |c: &[usize; 6], tsize: usize| -> Option<usize> {
            let [isut, isstd, leap, time, typ, chars] = *c;
            time.checked_mul(tsize + 1)?
                .checked_add(typ.checked_mul(6)?)?
                .checked_add(chars)?
                .checked_add(leap.checked_mul(tsize + 4)?)?
                .checked_add(isstd)?
                .checked_add(isut)
        };
        let c1 = counts(0)?;
        let (hdr, c, tsize) = if version >= b'2' {
            let second = 44usize.checked_add(block_len(&c1, 4)?)?;
            if b.get(second..second + 4)? != b"TZif" {
                return None;
            }
            (second, counts(second)?, 8usize)
        } else {
            (0, c1, 4usize)
        };
        let data = hdr + 44;
        let [_, _, _, timecnt, typecnt, _] = c;
        if typecnt == 0 || b.len() < data.checked_add(block_len(&c, tsize)?)? {
            return None;
        }
        let idx_at = data + timecnt * tsize;
        let types_at = idx_at + timecnt;
        let offset_of = |t: usize| -> Option<i64> {
            if t >= typecnt {
                return None;
            }
            Some(tzif_u32(b, types_at + 6 * t)? as i32 as i64)
        };
        let mut transitions = Vec::with_capacity(timecnt);
        for i in 0..timecnt {
            let at = data + i * tsize;
            let t = if tsize == 8 {
                i64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?)
            } else {
                tzif_u32(b, at)? as i32 as i64
            };
            let ty = *b.get(idx_at + i)? as usize;
            transitions.push((t, offset_of(ty)?));
        }
        Some(TimeZone::Table {
            transitions,
            initial: offset_of(0)?,
        })
    }

    /// Offset east of UTC in seconds at Unix time `t`.
    pub fn offset_at(&self, t: i64) -> i64 {
        match self {
            TimeZone::Utc => 0,
            TimeZone::Fixed(o) => *o,
            TimeZone::Table {
                transitions,
                initial,
            } => {
                let n = transitions.partition_point(|(at, _)| *at <= t);
                match n.checked_sub(1).and_then(|i| transitions.get(i)) {
                    Some((_, o)) => *o,
                    None => *initial,
                }
            }
        }
    }
}
