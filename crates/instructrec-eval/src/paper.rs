//! The paper's published figures (Games, InstructRec, Zhang et al. 2023), as restated in
//! docs/method.md, so that reports can print ours beside theirs. A figure is only put beside
//! ours when the report's data is the dataset it was measured on ([`figures_for`]): the paper's
//! Games numbers say nothing about MovieLens or Toys.

use instructrec_data::Source;
use serde::Serialize;

use crate::harness::Setting;
use crate::protocol::Protocol;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PaperFigure {
    pub protocol: Protocol,
    /// The row label as the paper's table gives it.
    pub scenario: &'static str,
    /// The dataset it was measured on, as the paper names it ("Games", "CDs").
    pub dataset: &'static str,
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
    // Every scenario was measured on Games except zero-shot, which tested on CDs.
    let dataset = match protocol {
        ZeroShot => "CDs",
        _ => "Games",
    };
    PaperFigure {
        protocol,
        scenario,
        dataset,
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

/// The paper's rows for one protocol, whatever the data. The held-out protocol gets the
/// personalised-search I1 rows: models tuned *with* that scenario, the ceiling the held-out stages
/// are compared to (the paper's held-out curve is only a figure, not restated in
/// docs/method.md).
pub fn figures_for_protocol(protocol: Protocol) -> Vec<PaperFigure> {
    PAPER_FIGURES
        .iter()
        .copied()
        .filter(|f| match protocol {
            HeldOut => f.protocol == PersonalisedSearch && f.scenario.contains("I1"),
            _ => f.protocol == protocol,
        })
        .collect()
}

/// The paper's rows a report on `source` shows: those of its protocol measured on the dataset
/// `source` holds (see [`names_dataset`]). The one place that decides it: the report's markdown
/// and its plot both read the rows it returns.
pub fn figures_for(protocol: Protocol, source: &Source) -> Vec<PaperFigure> {
    figures_for_protocol(protocol)
        .into_iter()
        .filter(|f| names_dataset(source, f.dataset))
        .collect()
}

/// Whether a prepared dataset's source is the paper's `dataset` ("Games", "CDs"), read from the
/// names of its input files and of the folders holding them: the importers name no dataset, but
/// its files do (`amazon-games/raw/Games.inter.json`, `Video_Games.json.gz`,
/// `CDs_and_Vinyl.json.gz`). A name matches as a whole word, without case.
pub fn names_dataset(source: &Source, dataset: &str) -> bool {
    source.paths.iter().any(|path| {
        // The file and its two nearest folders (`amazon-games/raw/Games.inter.json`).
        let mut near = path.rsplit(['/', '\\']).filter(|p| !p.is_empty()).take(3);
        near.any(|part| {
            part.split(|c: char| !c.is_ascii_alphanumeric())
                .any(|word| word.eq_ignore_ascii_case(dataset))
        })
    })
}

/// The rows of `figures` (one protocol's) measured in a report's own scenario: where they are of
/// several scenarios (personalised search has P2, I1 and I2 rows), those whose scenario names the
/// report's (`<P1,I1,T3>`), and none if it names no such scenario; where they are all of one,
/// all of them.
pub fn same_scenario<'a>(figures: &'a [PaperFigure], scenario: &str) -> Vec<&'a PaperFigure> {
    let one = figures.windows(2).all(|w| w[0].scenario == w[1].scenario);
    if one {
        return figures.iter().collect();
    }
    let tag = scenario
        .find('<')
        .and_then(|start| Some(&scenario[start..=start + scenario[start..].find('>')?]));
    match tag {
        Some(tag) => figures
            .iter()
            .filter(|f| f.scenario.contains(tag))
            .collect(),
        None => Vec::new(),
    }
}

/// The list setting of ours that a protocol's paper rows are comparable with: 1+99 in ten groups
/// for the tournament, 1+9 lists for every other scenario.
pub fn paper_setting(protocol: Protocol) -> Setting {
    match protocol {
        Tournament => Setting::Tournament {
            size: 100,
            groups: 10,
        },
        _ => Setting::Sampled { size: 10 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(paths: &[&str]) -> Source {
        Source {
            format: "test".into(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn figures_are_kept_only_for_the_dataset_they_were_measured_on() {
        let games = source(&[
            "../shared/datasets/amazon-games/raw/Games.inter.json",
            "../shared/datasets/amazon-games/items.jsonl",
        ]);
        let toys = source(&[
            "/work/shared/datasets/amazon-toys/sequential_data.txt",
            "/work/shared/datasets/amazon-toys/id2title.json",
        ]);
        let ml = source(&["../shared/datasets/ml-100k/ml-100k.inter"]);
        let cds = source(&["/data/amazon2018/CDs_and_Vinyl.json.gz"]);
        assert_eq!(figures_for(Sequential, &games).len(), 4);
        assert!(figures_for(Sequential, &ml).is_empty());
        assert!(figures_for(Sequential, &toys).is_empty());
        assert!(figures_for(Sequential, &source(&[])).is_empty());
        // Zero-shot was tested on CDs: not on Games, not on Toys.
        assert!(figures_for(ZeroShot, &games).is_empty());
        assert!(figures_for(ZeroShot, &toys).is_empty());
        assert_eq!(figures_for(ZeroShot, &cds).len(), 3);
        assert!(names_dataset(&source(&["/x/Video_Games.json.gz"]), "Games"));
        // A whole word of the file or its nearest folders, not any substring anywhere.
        assert!(!names_dataset(
            &source(&["/x/boardgames/items.txt"]),
            "Games"
        ));
        assert!(!names_dataset(
            &source(&["/home/games/work/data/toys/items.txt"]),
            "Games"
        ));
        assert_eq!(figures_for(HeldOut, &games).len(), 2);
        let search = figures_for(PersonalisedSearch, &games);
        assert_eq!(search.len(), 6);
        let i1 = same_scenario(&search, "<P1,I1,T3>");
        assert_eq!(i1.len(), 2);
        assert!(i1
            .iter()
            .all(|f| f.scenario == "personalised search <P1,I1,T3>"));
        assert_eq!(same_scenario(&search, "<P1,P2,T3>")[0].hr1, 0.5005);
        assert!(same_scenario(&search, "<P1,I1/I2,T3>").is_empty());
        // One scenario's rows are all kept, however the report words it.
        let hard = figures_for(HardNegatives, &games);
        assert_eq!(same_scenario(&hard, "<P1,I0,T3>, hard negatives").len(), 2);
        for f in figures_for_protocol(Tournament) {
            assert!(f.scenario.contains("100 candidates"));
        }
    }
}
