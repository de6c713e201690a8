//! Times the parts of SASRec and BERT4Rec training steps on a prepared dataset:
//! `cargo run -p instructrec-baselines --release --example seqrec_speed -- DIR [STEPS]`.

use instructrec_baselines::seqrec::{time_steps, SeqRecConfig};
use instructrec_data::Prepared;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).expect("usage: seqrec_speed DIR [STEPS]");
    let steps: usize = args.get(2).map_or(Ok(20), |s| s.parse())?;
    let prepared = Prepared::load(std::path::Path::new(dir))?;
    for config in [SeqRecConfig::sasrec(1), SeqRecConfig::bert4rec(1)] {
        let t = time_steps(&prepared, &config, steps)?;
        let per = |x: f64| 1000.0 * x / steps as f64;
        println!(
            "{}: per step batch {:.1} ms, forward {:.1} ms, backward {:.1} ms, update {:.1} ms",
            config.name(),
            per(t.batch_s),
            per(t.forward_s),
            per(t.backward_s),
            per(t.update_s)
        );
    }
    Ok(())
}
