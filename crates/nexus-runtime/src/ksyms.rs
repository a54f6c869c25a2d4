//! Kernel symbol lookup from `/proc/kallsyms` text, for `ksym()` values and
//! `kstack` frames. Parsed once, on first use, into a sorted table.

/// Kernel symbols sorted by address.
#[derive(Debug, Clone, Default)]
pub struct KernelSymbols {
    /// `(address, name)`, sorted by address; zero addresses (what kallsyms
    /// shows without privileges) are left out.
    table: Vec<(u64, String)>,
}

impl KernelSymbols {
    /// Parse kallsyms text (`ADDR TYPE NAME [MODULE]` per line). Lines that
    /// do not parse are skipped: the table is best-effort by nature.
    pub fn parse(text: &str) -> Self {
        let mut table: Vec<(u64, String)> = text
            .lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                let addr = u64::from_str_radix(parts.next()?, 16).ok()?;
                let kind = parts.next()?;
                let name = parts.next()?;
                // Text symbols only: frames and `ksym()` point into code.
                let is_text = matches!(kind, "t" | "T" | "w" | "W");
                (addr != 0 && is_text).then(|| (addr, name.to_string()))
            })
            .collect();
        table.sort_by_key(|&(addr, _)| addr);
        KernelSymbols { table }
    }

    /// Read `/proc/kallsyms`; an empty table when it cannot be read (frames
    /// then print as bare addresses, as bpftrace does).
    pub fn load() -> Self {
        std::fs::read_to_string("/proc/kallsyms")
            .map(|t| Self::parse(&t))
            .unwrap_or_default()
    }

    /// The symbol containing `addr` and the offset into it.
    pub fn resolve(&self, addr: u64) -> Option<(&str, u64)> {
        let i = self.table.partition_point(|&(a, _)| a <= addr);
        let (start, name) = self.table.get(i.checked_sub(1)?)?;
        Some((name.as_str(), addr - start))
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when no symbol could be read.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_to_the_preceding_text_symbol() {
        let syms = KernelSymbols::parse(
            "ffffffff81000100 T do_sys_open\n\
             ffffffff81000000 T _stext\n\
             ffffffff81000080 d some_data\n\
             0000000000000000 T hidden\n\
             garbage line\n",
        );
        assert_eq!(syms.len(), 2);
        assert_eq!(syms.resolve(0xffffffff81000104), Some(("do_sys_open", 4)));
        assert_eq!(syms.resolve(0xffffffff81000090), Some(("_stext", 0x90)));
        assert_eq!(syms.resolve(0x10), None);
    }
}
