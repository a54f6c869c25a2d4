//! CPU lists from sysfs (`/sys/devices/system/cpu/{possible,online}`).

use std::io;

/// Parse a kernel CPU list such as `0-3,5,7-8` into CPU numbers.
pub fn parse_cpu_list(text: &str) -> Result<Vec<u32>, String> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let bad = || format!("bad CPU list entry {part:?}");
        match part.split_once('-') {
            Some((a, b)) => {
                let a: u32 = a.trim().parse().map_err(|_| bad())?;
                let b: u32 = b.trim().parse().map_err(|_| bad())?;
                if b < a {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.trim().parse().map_err(|_| bad())?),
        }
    }
    Ok(cpus)
}

fn read_list(path: &str) -> io::Result<Vec<u32>> {
    let text = std::fs::read_to_string(path)?;
    parse_cpu_list(&text)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {e}")))
}

/// CPUs the kernel may ever bring up: per-CPU map values have one slot each
/// (numbered up to the highest possible CPU).
pub fn possible_cpus() -> io::Result<Vec<u32>> {
    read_list("/sys/devices/system/cpu/possible")
}

/// Number of per-CPU value slots: the highest possible CPU + 1.
pub fn possible_cpu_count() -> io::Result<usize> {
    let cpus = possible_cpus()?;
    Ok(cpus.iter().max().map_or(1, |&m| m as usize + 1))
}

/// CPUs currently online (where sampling events are opened).
pub fn online_cpus() -> io::Result<Vec<u32>> {
    read_list("/sys/devices/system/cpu/online")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_singles() {
        assert_eq!(
            parse_cpu_list("0-3,5,7-8\n").unwrap(),
            vec![0, 1, 2, 3, 5, 7, 8]
        );
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
    }
}
