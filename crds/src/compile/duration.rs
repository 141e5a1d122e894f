//! Go-style durations (`24h`, `1h30m`, `500ms`), the format Kubernetes users already write.

/// Parses a Go duration into whole seconds (sub-second parts round up, so `500ms` is 1 s and
/// never silently 0). Negative durations and unknown units are errors.
pub fn parse_duration_secs(input: &str) -> Result<u64, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty duration; write e.g. 30s, 15m, 24h".into());
    }
    if s == "0" {
        return Ok(0);
    }
    let mut total_ms: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("expected a number at {rest:?}; write e.g. 30s, 15m, 24h"));
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| format!("{:?} is not a number", &rest[..num_len]))?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit_ms: f64 = match &rest[..unit_len] {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "" => return Err(format!("{input:?} has a number without a unit (ms, s, m, h)")),
            other => return Err(format!("unknown unit {other:?}; use ms, s, m or h")),
        };
        rest = &rest[unit_len..];
        let ms = number * unit_ms;
        if !ms.is_finite() || ms > 1e15 {
            return Err(format!("{input:?} is too long"));
        }
        total_ms += ms.ceil() as u128;
    }
    Ok(total_ms.div_ceil(1000) as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_duration_secs;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("24h", 86_400),
            ("30s", 30),
            ("1h30m", 5_400),
            ("8760h", 31_536_000),
            ("500ms", 1),
            ("1.5h", 5_400),
            ("0", 0),
            ("0s", 0),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration_secs(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects_bad_durations() {
        for input in ["", "h", "10", "-5s", "5d", "5 s", "s5", "1e3s"] {
            assert!(parse_duration_secs(input).is_err(), "{input} should fail");
        }
    }
}
