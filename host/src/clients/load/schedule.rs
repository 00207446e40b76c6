//! When each request of the open model is due.
//!
//! The open model sends at a constant arrival rate, or at a rate that ramps
//! linearly from `from` to `to` over `ramp` and then stays at `to`. Request
//! `k` (0-based) is due when the cumulative number of arrivals reaches `k`:
//! N(t) = from·t + (to − from)·t² / (2·ramp) during the ramp. Latency is
//! measured from this due time, not from when the request was actually sent,
//! so a server that stalls cannot hide its queueing (no coordinated omission).

use std::time::Duration;

/// An arrival rate in requests per second, possibly ramping.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub from: f64,
    pub to: f64,
    /// Zero for a constant rate.
    pub ramp: Duration,
}

impl Rate {
    /// Offset from the start of the run at which request `k` is due.
    pub fn due(&self, k: u64) -> Duration {
        let k = k as f64;
        let ramp = self.ramp.as_secs_f64();
        if ramp == 0.0 || self.from == self.to {
            return Duration::from_secs_f64(k / self.to);
        }
        let slope = (self.to - self.from) / ramp; // requests/s per second
        let during_ramp = self.from * ramp + slope * ramp * ramp / 2.0;
        if k <= during_ramp {
            // Solve from·t + slope·t²/2 = k for t >= 0.
            let t = if slope.abs() < f64::EPSILON {
                k / self.from
            } else {
                (-self.from + (self.from * self.from + 2.0 * slope * k).max(0.0).sqrt()) / slope
            };
            Duration::from_secs_f64(t.max(0.0))
        } else {
            Duration::from_secs_f64(ramp + (k - during_ramp) / self.to)
        }
    }

    /// Parses `R` or `A..B` (requests per second); a range needs a ramp.
    pub fn parse(text: &str, ramp: Option<Duration>) -> Result<Rate, String> {
        let number = |s: &str| -> Result<f64, String> {
            let v: f64 = s.trim().parse().map_err(|_| format!("--rate: {s:?} is not a number"))?;
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("--rate: {s} must be above 0"));
            }
            Ok(v)
        };
        match text.split_once("..") {
            Some((a, b)) => {
                let ramp = ramp.ok_or("--rate A..B ramps from A to B: give --ramp DURATION")?;
                if ramp.is_zero() {
                    return Err("--ramp must be above 0".into());
                }
                Ok(Rate { from: number(a)?, to: number(b)?, ramp })
            }
            None => {
                if ramp.is_some() {
                    return Err("--ramp needs a range such as --rate 100..2000".into());
                }
                let r = number(text)?;
                Ok(Rate { from: r, to: r, ramp: Duration::ZERO })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_rate_spaces_requests_evenly() {
        let rate = Rate::parse("200", None).unwrap();
        assert_eq!(rate.due(0), Duration::ZERO);
        assert_eq!(rate.due(1), Duration::from_millis(5));
        assert_eq!(rate.due(1000), Duration::from_secs(5));
    }

    #[test]
    fn a_ramp_sends_the_integral_of_its_rate() {
        // 100 -> 300 req/s over 10 s: 2000 requests during the ramp.
        let rate = Rate::parse("100..300", Some(Duration::from_secs(10))).unwrap();
        let close = |d: Duration, secs: f64| (d.as_secs_f64() - secs).abs() < 1e-6;
        assert!(close(rate.due(2000), 10.0), "{:?}", rate.due(2000));
        // After 5 s: 100·5 + 20·25/2 = 750 requests.
        assert!(close(rate.due(750), 5.0), "{:?}", rate.due(750));
        // After the ramp the rate stays at 300/s.
        assert!(close(rate.due(2300), 11.0), "{:?}", rate.due(2300));
        // Ramping down works too.
        let down = Rate::parse("300..100", Some(Duration::from_secs(10))).unwrap();
        assert!(close(down.due(2000), 10.0), "{:?}", down.due(2000));
    }

    #[test]
    fn rates_are_validated() {
        assert!(Rate::parse("0", None).is_err());
        assert!(Rate::parse("fast", None).unwrap_err().contains("not a number"));
        assert!(Rate::parse("1..2", None).unwrap_err().contains("--ramp"));
        assert!(Rate::parse("5", Some(Duration::from_secs(1))).unwrap_err().contains("range"));
    }
}
