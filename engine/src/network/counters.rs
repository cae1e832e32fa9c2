//! Traffic counters of a container's interfaces, as `docker stats` and cAdvisor report them.
//!
//! They are read from `/proc/thread-self/net/dev` on a thread that entered the container's
//! network namespace: one file read per container, no netlink socket, and the pinned
//! namespace file (not a pid that could be reused) says whose counters they are.

use std::io;

/// Counters of one interface (`struct rtnl_link_stats64`, as `/proc/net/dev` prints it).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceCounters {
    pub interface: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

/// The counters of every interface but `lo` in the calling thread's network namespace.
pub fn read_current() -> io::Result<Vec<InterfaceCounters>> {
    const PATH: &str = "/proc/thread-self/net/dev";
    let text = std::fs::read_to_string(PATH)
        .map_err(|e| io::Error::new(e.kind(), format!("read {PATH}: {e}")))?;
    parse_net_dev(&text).map_err(|line| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("read {PATH}: unexpected line {line:?}"),
        )
    })
}

/// Parses `/proc/net/dev`: two header lines, then `name: 8 receive and 8 transmit fields`.
/// Returns the offending line when one does not have that shape.
pub fn parse_net_dev(text: &str) -> Result<Vec<InterfaceCounters>, String> {
    let mut out = Vec::new();
    for line in text.lines().skip(2) {
        let bad = || line.to_string();
        let (name, fields) = line.split_once(':').ok_or_else(bad)?;
        let name = name.trim();
        let v: Vec<u64> = fields
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        if v.len() != 16 {
            return Err(bad());
        }
        if name == "lo" {
            continue;
        }
        // receive: bytes packets errs drop fifo frame compressed multicast
        // transmit: bytes packets errs drop fifo colls carrier compressed
        out.push(InterfaceCounters {
            interface: name.to_string(),
            rx_bytes: v[0],
            rx_packets: v[1],
            rx_errors: v[2],
            rx_dropped: v[3],
            tx_bytes: v[8],
            tx_packets: v[9],
            tx_errors: v[10],
            tx_dropped: v[11],
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0
  eth0: 8723412   5932    1    2    0     0          0         0 18446744073709551615  4021    3    4    0     0       0          0
  eth1:      0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
";

    #[test]
    fn reads_every_interface_but_lo_with_64_bit_counters() {
        let got = parse_net_dev(SAMPLE).unwrap();
        assert_eq!(
            got,
            vec![
                InterfaceCounters {
                    interface: "eth0".into(),
                    rx_bytes: 8723412,
                    tx_bytes: u64::MAX,
                    rx_packets: 5932,
                    tx_packets: 4021,
                    rx_errors: 1,
                    tx_errors: 3,
                    rx_dropped: 2,
                    tx_dropped: 4,
                },
                InterfaceCounters {
                    interface: "eth1".into(),
                    ..Default::default()
                },
            ]
        );
    }

    #[test]
    fn a_malformed_line_is_named() {
        let text = "h1\nh2\n  eth0: 1 2 3\n";
        assert_eq!(parse_net_dev(text), Err("  eth0: 1 2 3".to_string()));
        assert_eq!(parse_net_dev("h1\nh2\nno colon\n"), Err("no colon".into()));
        assert_eq!(parse_net_dev("h1\nh2\n"), Ok(vec![]));
    }
}
