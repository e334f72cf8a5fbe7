//! `/proc/meminfo` fields for the Status operation.

/// Total and available memory in KiB.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    pub total_kib: u64,
    pub available_kib: u64,
}

pub fn parse_meminfo(text: &str) -> MemInfo {
    let mut info = MemInfo::default();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let value = rest
            .split_ascii_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        match key {
            "MemTotal" => info.total_kib = value,
            "MemAvailable" => info.available_kib = value,
            _ => {}
        }
    }
    info
}

pub fn read_meminfo() -> MemInfo {
    std::fs::read_to_string("/proc/meminfo")
        .map(|t| parse_meminfo(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_total_and_available() {
        let text = "MemTotal:         500012 kB\nMemFree:          400000 kB\nMemAvailable:     450123 kB\nBuffers: 1 kB\n";
        assert_eq!(
            parse_meminfo(text),
            MemInfo {
                total_kib: 500012,
                available_kib: 450123
            }
        );
        assert_eq!(parse_meminfo("garbage\nMemTotal: x kB"), MemInfo::default());
    }
}
