//! The paper's published figures (Games, InstructRec, Zhang et al. 2023), as restated in
//! docs/method.md, so that reports can print ours beside theirs.

use serde::Serialize;

use crate::protocol::Protocol;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PaperFigure {
    pub protocol: Protocol,
    /// The row label as the paper's table gives it.
    pub scenario: &'static str,
    pub model: &'static str,
    pub hr1: f64,
    pub hr3: f64,
    pub hr5: f64,
    pub ndcg3: f64,
    pub ndcg5: f64,
}

const fn fig(
    protocol: Protocol,
    scenario: &'static str,
    model: &'static str,
    v: [f64; 5],
) -> PaperFigure {
    PaperFigure {
        protocol,
        scenario,
        model,
        hr1: v[0],
        hr3: v[1],
        hr5: v[2],
        ndcg3: v[3],
        ndcg5: v[4],
    }
}

use Protocol::*;

/// Games, 1 positive + 9 random negatives unless the scenario says otherwise.
pub const PAPER_FIGURES: &[PaperFigure] = &[
    fig(
        Sequential,
        "sequential <P1,I0,T3>",
        "BERT4Rec",
        [0.5747, 0.8188, 0.9083, 0.7176, 0.7546],
    ),
    fig(
        Sequential,
        "sequential <P1,I0,T3>",
        "SASRec",
        [0.6663, 0.8741, 0.9389, 0.7887, 0.8155],
    ),
    fig(
        Sequential,
        "sequential <P1,I0,T3>",
        "GPT-3.5",
        [0.3640, 0.6300, 0.7300, 0.5216, 0.5623],
    ),
    fig(
        Sequential,
        "sequential <P1,I0,T3>",
        "InstructRec",
        [0.6947, 0.8793, 0.9429, 0.8033, 0.8295],
    ),
    fig(
        ProductSearch,
        "product search (query from I2)",
        "DSSM",
        [0.7279, 0.9484, 0.9899, 0.8587, 0.8760],
    ),
    fig(
        ProductSearch,
        "product search (query from I2)",
        "InstructRec",
        [0.8263, 0.9411, 0.9728, 0.8944, 0.9075],
    ),
    fig(
        PersonalisedSearch,
        "personalised search <P1,P2,T3>",
        "TEM",
        [0.5005, 0.7368, 0.8462, 0.6383, 0.6833],
    ),
    fig(
        PersonalisedSearch,
        "personalised search <P1,P2,T3>",
        "InstructRec",
        [0.6959, 0.8806, 0.9452, 0.8045, 0.8312],
    ),
    fig(
        PersonalisedSearch,
        "personalised search <P1,I1,T3>",
        "TEM",
        [0.5723, 0.7860, 0.8712, 0.6974, 0.7325],
    ),
    fig(
        PersonalisedSearch,
        "personalised search <P1,I1,T3>",
        "InstructRec",
        [0.8278, 0.9444, 0.9741, 0.8971, 0.9094],
    ),
    fig(
        PersonalisedSearch,
        "personalised search <P1,I2,T3>",
        "TEM",
        [0.8665, 0.9149, 0.9293, 0.8954, 0.9013],
    ),
    fig(
        PersonalisedSearch,
        "personalised search <P1,I2,T3>",
        "InstructRec",
        [0.9269, 0.9868, 0.9951, 0.9631, 0.9665],
    ),
    fig(
        HardNegatives,
        "sequential, 9 hard negatives",
        "SASRec",
        [0.0355, 0.3448, 0.5536, 0.2127, 0.2984],
    ),
    fig(
        HardNegatives,
        "sequential, 9 hard negatives",
        "InstructRec",
        [0.1841, 0.4823, 0.6648, 0.3558, 0.4307],
    ),
    fig(
        Tournament,
        "personalised search <P1,I1,T3>, 100 candidates",
        "TEM",
        [0.2794, 0.4484, 0.5284, 0.3777, 0.4106],
    ),
    fig(
        Tournament,
        "personalised search <P1,I1,T3>, 100 candidates",
        "InstructRec",
        [0.3276, 0.7694, 0.8334, 0.5903, 0.6163],
    ),
    fig(
        ZeroShot,
        "zero-shot Games -> CDs, sequential",
        "SASRec (trained on CDs)",
        [0.6713, 0.8754, 0.9428, 0.7915, 0.8194],
    ),
    fig(
        ZeroShot,
        "zero-shot Games -> CDs, sequential",
        "Flan-T5-XL untuned",
        [0.0927, 0.2886, 0.4814, 0.2035, 0.2823],
    ),
    fig(
        ZeroShot,
        "zero-shot Games -> CDs, sequential",
        "InstructRec (tuned on Games)",
        [0.2332, 0.4392, 0.6052, 0.3511, 0.4190],
    ),
];

/// The paper's rows for one protocol. The held-out protocol gets the personalised-search I1
/// rows: models tuned *with* that scenario, the ceiling the held-out stages are compared to
/// (the paper's held-out curve is only a figure, not restated in docs/method.md).
pub fn figures_for(protocol: Protocol) -> Vec<PaperFigure> {
    PAPER_FIGURES
        .iter()
        .copied()
        .filter(|f| match protocol {
            HeldOut => f.protocol == PersonalisedSearch && f.scenario.contains("I1"),
            _ => f.protocol == protocol,
        })
        .collect()
}
