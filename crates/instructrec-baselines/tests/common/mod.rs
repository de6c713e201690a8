//! SASRec and BERT4Rec small enough for tests.

use instructrec_baselines::seqrec::{self, SeqRec, SeqRecConfig};
use instructrec_baselines::Trained;
use instructrec_data::Prepared;

pub fn tiny(mut c: SeqRecConfig) -> SeqRecConfig {
    c.dim = 16;
    c.ff_dim = 32;
    c.max_len = 8;
    c.stopping.batch_size = 32;
    c.stopping.max_epochs = 12;
    c.stopping.patience = Some(3);
    c.lr = 5e-3;
    c.dropout = 0.1;
    c.validation_stride = 1;
    c
}

pub fn train(p: &Prepared, config: SeqRecConfig) -> Trained<SeqRec> {
    let model = SeqRec::new(config, p.dataset.items.len()).unwrap();
    seqrec::train(p, model).unwrap()
}
