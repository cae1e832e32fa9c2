//! IP address management, as pure functions: which subnet a new network gets from the pool,
//! and which address a container gets in a subnet. The leases themselves are in the state db.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Whether two networks share any address.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first subnet of length `len` in `pool` that overlaps none of `taken` (other berth
/// networks, routes of the host, the host's nameservers as /32s).
pub fn pick_subnet(pool: &Ipv4Net, len: u8, taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    pool.subnets(len)
        .ok()?
        .find(|s| !taken.iter().any(|t| overlaps(s, t)))
}

/// The gateway a network gets when its spec names none: the first host address.
pub fn default_gateway(subnet: &Ipv4Net) -> Option<Ipv4Addr> {
    subnet.hosts().next()
}

/// The lowest free host address of `subnet`: not the gateway, not held by a lease.
pub fn pick_address(
    subnet: &Ipv4Net,
    gateway: Ipv4Addr,
    leased: &BTreeSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    subnet
        .hosts()
        .find(|a| *a != gateway && !leased.contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn subnets_come_from_the_pool_in_order_and_skip_what_is_taken() {
        let pool = net("10.89.0.0/16");
        assert_eq!(pick_subnet(&pool, 24, &[]), Some(net("10.89.0.0/24")));
        let taken = [
            net("10.89.0.0/24"),
            net("10.89.1.128/25"),
            net("10.89.2.53/32"),
        ];
        assert_eq!(pick_subnet(&pool, 24, &taken), Some(net("10.89.3.0/24")));
        // A route that covers the whole pool leaves nothing.
        assert_eq!(pick_subnet(&pool, 24, &[net("10.0.0.0/8")]), None);
        let small = net("10.89.0.0/23");
        assert_eq!(
            pick_subnet(&small, 24, &[net("10.89.0.0/24"), net("10.89.1.0/24")]),
            None
        );
    }

    #[test]
    fn overlap_is_symmetric() {
        assert!(overlaps(&net("10.0.0.0/8"), &net("10.89.1.0/24")));
        assert!(overlaps(&net("10.89.1.0/24"), &net("10.0.0.0/8")));
        assert!(!overlaps(&net("10.89.1.0/24"), &net("10.89.2.0/24")));
    }

    #[test]
    fn addresses_skip_gateway_and_leases_and_run_out() {
        let s = net("10.89.0.0/29"); // hosts .1 to .6
        let gw = default_gateway(&s).unwrap();
        assert_eq!(gw, Ipv4Addr::new(10, 89, 0, 1));
        let mut leased = BTreeSet::new();
        assert_eq!(
            pick_address(&s, gw, &leased),
            Some(Ipv4Addr::new(10, 89, 0, 2))
        );
        leased.extend([Ipv4Addr::new(10, 89, 0, 2), Ipv4Addr::new(10, 89, 0, 4)]);
        assert_eq!(
            pick_address(&s, gw, &leased),
            Some(Ipv4Addr::new(10, 89, 0, 3))
        );
        leased.extend([3, 5, 6].map(|o| Ipv4Addr::new(10, 89, 0, o)));
        assert_eq!(
            pick_address(&s, gw, &leased),
            None,
            "the broadcast address is never handed out"
        );
        // A gateway elsewhere in the subnet frees .1.
        assert_eq!(
            pick_address(&s, Ipv4Addr::new(10, 89, 0, 6), &BTreeSet::new()),
            Some(Ipv4Addr::new(10, 89, 0, 1))
        );
    }
}
