//! Signal names for `stopSignal`, with their Linux numbers.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signal `{0}`; hint: write a signal name like SIGTERM, SIGINT, SIGQUIT or SIGUSR1 (or its number, 1-31)")]
pub struct SignalError(String);

// Numbers of x86, arm and the generic Linux ABI (mips, sparc and alpha differ).
const SIGNALS: [(&str, i32); 31] = [
    ("SIGHUP", 1),
    ("SIGINT", 2),
    ("SIGQUIT", 3),
    ("SIGILL", 4),
    ("SIGTRAP", 5),
    ("SIGABRT", 6),
    ("SIGBUS", 7),
    ("SIGFPE", 8),
    ("SIGKILL", 9),
    ("SIGUSR1", 10),
    ("SIGSEGV", 11),
    ("SIGUSR2", 12),
    ("SIGPIPE", 13),
    ("SIGALRM", 14),
    ("SIGTERM", 15),
    ("SIGSTKFLT", 16),
    ("SIGCHLD", 17),
    ("SIGCONT", 18),
    ("SIGSTOP", 19),
    ("SIGTSTP", 20),
    ("SIGTTIN", 21),
    ("SIGTTOU", 22),
    ("SIGURG", 23),
    ("SIGXCPU", 24),
    ("SIGXFSZ", 25),
    ("SIGVTALRM", 26),
    ("SIGPROF", 27),
    ("SIGWINCH", 28),
    ("SIGIO", 29),
    ("SIGPWR", 30),
    ("SIGSYS", 31),
];

/// A signal, written `SIGTERM`, `TERM` or `15`; serialized by its canonical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Signal(i32);

impl Signal {
    pub const SIGTERM: Signal = Signal(15);
    pub const SIGKILL: Signal = Signal(9);

    pub fn from_number(number: i32) -> Option<Self> {
        SIGNALS
            .iter()
            .any(|(_, n)| *n == number)
            .then_some(Signal(number))
    }

    /// The Linux signal number.
    pub const fn number(&self) -> i32 {
        self.0
    }

    /// The canonical name, like `SIGTERM`.
    pub fn name(&self) -> &'static str {
        SIGNALS
            .iter()
            .find(|(_, n)| *n == self.0)
            .map(|(name, _)| *name)
            .unwrap_or("SIGTERM")
    }
}

impl Default for Signal {
    fn default() -> Self {
        Signal::SIGTERM
    }
}

impl FromStr for Signal {
    type Err = SignalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim().to_ascii_uppercase();
        if let Ok(n) = text.parse::<i32>() {
            return Signal::from_number(n).ok_or_else(|| SignalError(s.to_string()));
        }
        let full = if text.starts_with("SIG") {
            text
        } else {
            format!("SIG{text}")
        };
        let full = match full.as_str() {
            "SIGIOT" => "SIGABRT".to_string(),
            "SIGPOLL" => "SIGIO".to_string(),
            "SIGCLD" => "SIGCHLD".to_string(),
            _ => full,
        };
        SIGNALS
            .iter()
            .find(|(name, _)| *name == full)
            .map(|(_, n)| Signal(*n))
            .ok_or_else(|| SignalError(s.to_string()))
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Signal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Signal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Signal;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a signal name like SIGTERM")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Signal, E> {
                v.to_string().parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Signal, E> {
                v.to_string().parse().map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Signal, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_numbers() {
        let cases = [
            ("SIGTERM", 15, "SIGTERM"),
            ("term", 15, "SIGTERM"),
            ("SIGINT", 2, "SIGINT"),
            ("9", 9, "SIGKILL"),
            ("SIGQUIT", 3, "SIGQUIT"),
            ("USR1", 10, "SIGUSR1"),
            ("SIGIOT", 6, "SIGABRT"),
            ("SIGWINCH", 28, "SIGWINCH"),
        ];
        for (text, number, name) in cases {
            let s: Signal = text.parse().unwrap();
            assert_eq!((s.number(), s.name()), (number, name), "{text}");
        }
        assert_eq!(Signal::default().number(), 15);
    }

    #[test]
    fn unknown_signals_say_what_is_right() {
        for bad in ["SIGFOO", "0", "64", "", "SIG"] {
            let err = bad.parse::<Signal>().unwrap_err().to_string();
            assert!(err.contains("like SIGTERM"), "{bad}: {err}");
        }
    }
}
