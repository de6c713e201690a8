//! Evaluation protocols: which cases are built from a prepared dataset, and with which
//! candidates. Only protocols whose cases can be built honestly from what the data crate
//! provides are implemented; the others are named so that asking for them is a clear error.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// <P1,I0,T3>: the user's held-out item among the stored random negatives (1+9 and 1+99).
    Sequential,
    /// <P0,I2,T3>: a query from the target's categories, items split 80/10/10.
    ProductSearch,
    /// <P1,I1/I2,T3>: history plus a vague or specific intention.
    PersonalisedSearch,
    /// Sequential with 9 hard negatives from a two-tower matching model.
    HardNegatives,
    /// 1+99 candidates reranked as 10 groups of 10, the group winners reranked again.
    Tournament,
    /// A scenario left out of instruction tuning: the personalised-search cases with vague
    /// intentions, scored by instruction models tuned without any I1 line, one per stage of
    /// added instruction types.
    HeldOut,
    /// Trained on one domain, evaluated on another: the sequential cases of the target
    /// dataset, scored by an instruction model tuned elsewhere.
    ZeroShot,
}

impl Protocol {
    pub const ALL: [Protocol; 7] = [
        Protocol::Sequential,
        Protocol::ProductSearch,
        Protocol::PersonalisedSearch,
        Protocol::HardNegatives,
        Protocol::Tournament,
        Protocol::HeldOut,
        Protocol::ZeroShot,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Sequential => "sequential",
            Protocol::ProductSearch => "product-search",
            Protocol::PersonalisedSearch => "personalised-search",
            Protocol::HardNegatives => "hard-negatives",
            Protocol::Tournament => "tournament",
            Protocol::HeldOut => "held-out",
            Protocol::ZeroShot => "zero-shot",
        }
    }

    /// The paper's scenario notation.
    pub fn scenario(self) -> &'static str {
        match self {
            Protocol::Sequential => "<P1,I0,T3>",
            Protocol::ProductSearch => "<P0,I2,T3>",
            Protocol::PersonalisedSearch => "<P1,I1/I2,T3>",
            Protocol::HardNegatives => "<P1,I0,T3>, hard negatives",
            Protocol::Tournament => "<P1,I1,T3>, 100 candidates",
            Protocol::HeldOut => "held-out <P1,I1,T3>",
            Protocol::ZeroShot => "zero-shot <P1,I0,T3>",
        }
    }

    /// Whether cases come from the instruction stage's query lines (see `crate::queries`).
    pub fn needs_queries(self) -> bool {
        matches!(
            self,
            Protocol::ProductSearch
                | Protocol::PersonalisedSearch
                | Protocol::Tournament
                | Protocol::HeldOut
        )
    }

    /// Why a protocol cannot be evaluated yet; `None` when it can.
    pub fn missing(self) -> Option<&'static str> {
        match self {
            Protocol::Sequential
            | Protocol::ProductSearch
            | Protocol::PersonalisedSearch
            | Protocol::Tournament
            | Protocol::HardNegatives
            | Protocol::ZeroShot
            | Protocol::HeldOut => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Protocol::ALL.iter().map(|p| p.as_str()).collect();
                format!(
                    "unknown protocol {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Protocol::ALL {
            assert_eq!(p.as_str().parse::<Protocol>().unwrap(), p);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
        }
        assert!("seq"
            .parse::<Protocol>()
            .unwrap_err()
            .contains("sequential"));
    }
}
