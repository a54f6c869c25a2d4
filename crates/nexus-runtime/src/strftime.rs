//! `strftime`-style time formatting for `time()` and `strftime()`, without
//! libc, in the local time zone as bpftrace uses it (`localtime_r`).
//!
//! The local zone is found once: `TZ` when set (`UTC`, `UTC0`, `GMT`, empty,
//! or a zone name / `:`path looked up under `/usr/share/zoneinfo`), else
//! `/etc/localtime`. Zone files (TZif) are read for their transition table;
//! instants after the table's last transition use its last offset (the POSIX
//! rule in the file's footer is not evaluated, so a zone whose file ends its
//! table early may be off by its DST shift in later years). Anything that
//! cannot be read falls back to UTC.
//!
//! Specifiers: `%a %A %b %h %B %c %C %d %D %e %F %H %I %j %k %l %m %M %n %p
//! %P %r %R %s %S %t %T %u %w %y %Y %z %Z %%`, and bpftrace's `%f`
//! (microseconds, 6 digits). Others are copied through unchanged.

use std::io::Write;
use std::sync::OnceLock;

/// A time zone as a table of UTC offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeZone {
    /// Transition instants (Unix seconds, ascending) and the index into
    /// `types` in force from then on.
    transitions: Vec<(i64, usize)>,
    /// (UTC offset in seconds, abbreviation).
    types: Vec<(i32, String)>,
    /// Type used before the first transition (or always, with none).
    initial: usize,
}

impl TimeZone {
    /// Coordinated Universal Time.
    pub fn utc() -> Self {
        TimeZone::fixed(0, "UTC")
    }

    /// A zone with a constant offset east of UTC.
    pub fn fixed(offset_seconds: i32, abbreviation: &str) -> Self {
        TimeZone {
            transitions: Vec::new(),
            types: vec![(offset_seconds, abbreviation.to_owned())],
            initial: 0,
        }
    }

    /// The process's local zone (see the module documentation), computed
    /// once and cached.
    pub fn local() -> &'static TimeZone {
        static LOCAL: OnceLock<TimeZone> = OnceLock::new();
        LOCAL.get_or_init(|| TimeZone::from_tz_value(std::env::var("TZ").ok().as_deref()))
    }

    /// The zone a `TZ` value names (`None`: unset, use `/etc/localtime`).
    pub fn from_tz_value(tz: Option<&str>) -> Self {
        let path = match tz {
            None => "/etc/localtime".to_owned(),
            Some("" | "UTC" | "UTC0" | "GMT" | "GMT0" | ":UTC" | "Etc/UTC") => return Self::utc(),
            Some(name) => {
                let name = name.strip_prefix(':').unwrap_or(name);
                if name.starts_with('/') {
                    name.to_owned()
                } else if name.contains("..") {
                    return Self::utc();
                } else {
                    format!("/usr/share/zoneinfo/{name}")
                }
            }
        };
        std::fs::read(path)
            .ok()
            .and_then(|data| Self::from_tzif(&data))
            .unwrap_or_else(Self::utc)
    }

    /// Parses a TZif file (RFC 8536); `None` when it is malformed.
    pub fn from_tzif(data: &[u8]) -> Option<Self> {
        let header = |d: &[u8]| -> Option<[usize; 6]> {
            if d.get(..4)? != b"TZif" {
                return None;
            }
            let mut counts = [0usize; 6];
            for (i, c) in counts.iter_mut().enumerate() {
                let at = 20 + 4 * i;
                *c = u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?) as usize;
            }
            Some(counts)
        };
        let [isut, isstd, leap, timecnt, typecnt, charcnt] = header(data)?;
        let version = *data.get(4)?;
        let v1_len = timecnt * 5 + typecnt * 6 + charcnt + leap * 8 + isstd + isut;
        // Version 2+ files repeat the data with 64-bit times; prefer those.
        let (body, counts, time_size) = if version >= b'2' {
            let second = data.get(44 + v1_len..)?;
            (second.get(44..)?, header(second)?, 8)
        } else {
            (
                data.get(44..)?,
                [isut, isstd, leap, timecnt, typecnt, charcnt],
                4,
            )
        };
        let [_, _, _, timecnt, typecnt, charcnt] = counts;
        if typecnt == 0 {
            return None;
        }
        let times = body.get(..timecnt * time_size)?;
        let idx = body.get(timecnt * time_size..timecnt * (time_size + 1))?;
        let types_at = timecnt * (time_size + 1);
        let ttinfo = body.get(types_at..types_at + typecnt * 6)?;
        let chars = body.get(types_at + typecnt * 6..types_at + typecnt * 6 + charcnt)?;

        let mut types = Vec::with_capacity(typecnt);
        for t in ttinfo.chunks_exact(6) {
            let offset = i32::from_be_bytes(t[..4].try_into().ok()?);
            let abbr_at = usize::from(t[5]);
            let abbr = chars.get(abbr_at..)?;
            let end = abbr.iter().position(|&c| c == 0).unwrap_or(abbr.len());
            types.push((offset, String::from_utf8_lossy(&abbr[..end]).into_owned()));
        }
        let mut transitions = Vec::with_capacity(timecnt);
        for (i, &ty) in idx.iter().enumerate() {
            let raw = &times[i * time_size..(i + 1) * time_size];
            let at = if time_size == 8 {
                i64::from_be_bytes(raw.try_into().ok()?)
            } else {
                i64::from(i32::from_be_bytes(raw.try_into().ok()?))
            };
            if usize::from(ty) >= typecnt {
                return None;
            }
            transitions.push((at, usize::from(ty)));
        }
        Some(TimeZone {
            transitions,
            types,
            initial: 0,
        })
    }

    /// UTC offset and abbreviation in force at `unix_seconds`.
    pub fn offset_at(&self, unix_seconds: i64) -> (i32, &str) {
        let ty = match self
            .transitions
            .partition_point(|&(at, _)| at <= unix_seconds)
        {
            0 => self.initial,
            n => self.transitions[n - 1].1,
        };
        let (offset, abbr) = &self.types[ty];
        (*offset, abbr)
    }
}

/// Broken-down local time.
struct Tm {
    year: i64,
    month: u32, // 1..=12
    day: u32,   // 1..=31
    hour: u32,
    minute: u32,
    second: u32,
    weekday: u32, // 0 = Sunday
    yearday: u32, // 0-based
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn broken_down(local_seconds: i64) -> Tm {
    let days = local_seconds.div_euclid(86_400);
    let secs = local_seconds.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    const CUMULATIVE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let leap_extra = u32::from(month > 2 && is_leap(year));
    Tm {
        year,
        month,
        day,
        hour: secs / 3600,
        minute: secs / 60 % 60,
        second: secs % 60,
        weekday: (days + 4).rem_euclid(7) as u32,
        yearday: CUMULATIVE[(month - 1) as usize] + day - 1 + leap_extra,
    }
}

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Appends `unix_nanos` formatted with `fmt` in the process's local zone.
pub fn format_local(out: &mut Vec<u8>, fmt: &str, unix_nanos: i64) {
    format(out, fmt, unix_nanos, TimeZone::local());
}

/// Appends `unix_nanos` formatted with `fmt` in zone `tz`.
pub fn format(out: &mut Vec<u8>, fmt: &str, unix_nanos: i64, tz: &TimeZone) {
    let seconds = unix_nanos.div_euclid(1_000_000_000);
    let micros = unix_nanos.rem_euclid(1_000_000_000) / 1000;
    let (offset, abbr) = tz.offset_at(seconds);
    let tm = broken_down(seconds + i64::from(offset));
    write_spec(out, fmt.as_bytes(), &tm, seconds, micros, offset, abbr);
}

fn write_spec(
    out: &mut Vec<u8>,
    fmt: &[u8],
    tm: &Tm,
    seconds: i64,
    micros: i64,
    offset: i32,
    abbr: &str,
) {
    // Writing into a Vec cannot fail, so write! results are ignored.
    let mut i = 0;
    while i < fmt.len() {
        let c = fmt[i];
        if c != b'%' || i + 1 == fmt.len() {
            out.push(c);
            i += 1;
            continue;
        }
        let spec = fmt[i + 1];
        i += 2;
        let hour12 = if tm.hour.is_multiple_of(12) {
            12
        } else {
            tm.hour % 12
        };
        let _ = match spec {
            b'a' => write!(out, "{}", &DAYS[tm.weekday as usize][..3]),
            b'A' => write!(out, "{}", DAYS[tm.weekday as usize]),
            b'b' | b'h' => write!(out, "{}", &MONTHS[(tm.month - 1) as usize][..3]),
            b'B' => write!(out, "{}", MONTHS[(tm.month - 1) as usize]),
            b'c' => {
                write_spec(
                    out,
                    b"%a %b %e %H:%M:%S %Y",
                    tm,
                    seconds,
                    micros,
                    offset,
                    abbr,
                );
                Ok(())
            }
            b'C' => write!(out, "{:02}", tm.year.div_euclid(100)),
            b'd' => write!(out, "{:02}", tm.day),
            b'D' => {
                write_spec(out, b"%m/%d/%y", tm, seconds, micros, offset, abbr);
                Ok(())
            }
            b'e' => write!(out, "{:2}", tm.day),
            b'f' => write!(out, "{micros:06}"),
            b'F' => write!(out, "{}-{:02}-{:02}", tm.year, tm.month, tm.day),
            b'H' => write!(out, "{:02}", tm.hour),
            b'I' => write!(out, "{hour12:02}"),
            b'j' => write!(out, "{:03}", tm.yearday + 1),
            b'k' => write!(out, "{:2}", tm.hour),
            b'l' => write!(out, "{hour12:2}"),
            b'm' => write!(out, "{:02}", tm.month),
            b'M' => write!(out, "{:02}", tm.minute),
            b'n' => writeln!(out),
            b'p' => write!(out, "{}", if tm.hour < 12 { "AM" } else { "PM" }),
            b'P' => write!(out, "{}", if tm.hour < 12 { "am" } else { "pm" }),
            b'r' => write!(
                out,
                "{hour12:02}:{:02}:{:02} {}",
                tm.minute,
                tm.second,
                if tm.hour < 12 { "AM" } else { "PM" }
            ),
            b'R' => write!(out, "{:02}:{:02}", tm.hour, tm.minute),
            b's' => write!(out, "{seconds}"),
            b'S' => write!(out, "{:02}", tm.second),
            b't' => write!(out, "\t"),
            b'T' => write!(out, "{:02}:{:02}:{:02}", tm.hour, tm.minute, tm.second),
            b'u' => write!(out, "{}", if tm.weekday == 0 { 7 } else { tm.weekday }),
            b'w' => write!(out, "{}", tm.weekday),
            b'y' => write!(out, "{:02}", tm.year.rem_euclid(100)),
            b'Y' => write!(out, "{}", tm.year),
            b'z' => {
                let sign = if offset < 0 { '-' } else { '+' };
                let abs = offset.unsigned_abs();
                write!(out, "{sign}{:02}{:02}", abs / 3600, abs / 60 % 60)
            }
            b'Z' => write!(out, "{abbr}"),
            b'%' => write!(out, "%"),
            other => {
                out.extend_from_slice(&[b'%', other]);
                Ok(())
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(f: &str, nanos: i64, tz: &TimeZone) -> String {
        let mut out = Vec::new();
        format(&mut out, f, nanos, tz);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formats_utc_like_glibc() {
        // 2026-12-06 08:22:36.123456789 UTC, a Sunday; expected strings from
        // `date -u -d @1796545356 '+…'` on this machine.
        let t = 1_796_545_356_123_456_789;
        let utc = TimeZone::utc();
        assert_eq!(fmt("%H:%M:%S", t, &utc), "08:22:36");
        assert_eq!(
            fmt("%Y-%m-%d %j %a %A %b %B", t, &utc),
            "2026-12-06 340 Sun Sunday Dec December"
        );
        assert_eq!(
            fmt("%c|%D|%e|%I %p|%s|%f|%z %Z|%%|%q", t, &utc),
            "Sun Dec  6 08:22:36 2026|12/06/26| 6|08 AM|1796545356|123456|+0000 UTC|%|%q"
        );
        assert_eq!(fmt("%F %T", 0, &utc), "1970-01-01 00:00:00");
        assert_eq!(
            fmt("%F %T %u %w", -1_000_000_000, &utc),
            "1969-12-31 23:59:59 3 3"
        );
        assert_eq!(
            fmt("%F %j", 951_782_400_000_000_000, &utc),
            "2000-02-29 060"
        );
    }

    #[test]
    fn fixed_offsets_shift_the_clock() {
        let tz = TimeZone::fixed(-5 * 3600 - 1800, "X");
        assert_eq!(fmt("%F %T %z %Z", 0, &tz), "1969-12-31 18:30:00 -0530 X");
    }

    #[test]
    fn reads_a_tzif_file() {
        // Build a version-1 TZif with one transition: UTC+1 "A" until t=100,
        // then UTC+2 "B".
        let mut d = Vec::new();
        d.extend_from_slice(b"TZif\0");
        d.extend_from_slice(&[0; 15]);
        for c in [0u32, 0, 0, 1, 2, 4] {
            d.extend_from_slice(&c.to_be_bytes());
        }
        d.extend_from_slice(&100i32.to_be_bytes());
        d.push(1);
        d.extend_from_slice(&3600i32.to_be_bytes());
        d.extend_from_slice(&[0, 0]);
        d.extend_from_slice(&7200i32.to_be_bytes());
        d.extend_from_slice(&[1, 2]);
        d.extend_from_slice(b"A\0B\0");
        let tz = TimeZone::from_tzif(&d).unwrap();
        assert_eq!(tz.offset_at(0), (3600, "A"));
        assert_eq!(tz.offset_at(100), (7200, "B"));
        assert!(TimeZone::from_tzif(b"nope").is_none());
    }

    #[test]
    fn utc_names_need_no_file() {
        assert_eq!(TimeZone::from_tz_value(Some("UTC")), TimeZone::utc());
        assert_eq!(
            TimeZone::from_tz_value(Some("../../etc/passwd")),
            TimeZone::utc()
        );
    }
}
