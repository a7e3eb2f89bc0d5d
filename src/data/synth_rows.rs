//! The rows `labelgen synth` writes and `labelgen pretrain` reads: a turn of
//! the logs and what was done to it.

use super::codec::table_columns;
use super::schema::Table;
use super::tables::{TableRow, Turn};

/// A turn of the synth output: the logs' columns plus what was corrupted.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SynthTurn {
    pub turn: Turn,
    /// The dialogue the copy was made from.
    pub source_dialogue_id: String,
    /// 0 for the untouched original, 1.. for corrupted copies.
    pub copy: i32,
    pub corruption: Option<String>,
    /// The user utterance and system response do not belong together (the
    /// pretraining target: swapped-response detection).
    pub swapped: bool,
    /// The turn is out of its dialogue's order.
    pub out_of_order: bool,
}

table_columns! {
    SynthTurn {
        ..turn: Turn named "synth",
        source_dialogue_id: Utf8,
        copy: Int32,
        corruption: Utf8,
        swapped: Bool,
        out_of_order: Bool,
    }
}

/// Read and written as a turns table with more columns: the turns schema
/// lists the extra ones as columns it does not know.
impl TableRow for SynthTurn {
    const TABLE: Table = Table::Turns;
    fn dialogue_id(&self) -> &str {
        &self.turn.dialogue_id
    }
    fn turn_index(&self) -> i32 {
        self.turn.turn_index
    }
    fn check_values(&self, check: &mut super::codec::RowCheck<'_>) {
        self.turn.check_values(check)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn row(copy: i32) -> SynthTurn {
        SynthTurn {
            turn: Turn {
                dialogue_id: format!("d1#c{copy}"),
                user_utterance: "hi".into(),
                system_response: "Hello.".into(),
                ..Turn::default()
            },
            source_dialogue_id: "d1".into(),
            copy,
            corruption: (copy > 0).then(|| "user_swap".into()),
            swapped: copy > 0,
            out_of_order: false,
        }
    }

    #[test]
    fn synth_columns_follow_the_turn_columns_and_read_back() {
        let rows = [row(0), row(1)];
        let batch = SynthTurn::to_batch(&rows).unwrap();
        let turn_columns = Turn::to_batch(&[]).unwrap().num_columns();
        let names: Vec<String> = batch.schema().fields()[turn_columns..]
            .iter()
            .map(|f| format!("{}:{}:{}", f.name(), f.data_type(), f.is_nullable()))
            .collect();
        assert_eq!(
            names,
            [
                "source_dialogue_id:Utf8:false",
                "copy:Int32:false",
                "corruption:Utf8:true",
                "swapped:Boolean:false",
                "out_of_order:Boolean:false",
            ]
        );
        let decoded = SynthTurn::from_batch(&batch, &Arc::from("s.parquet"), 0).unwrap();
        assert!(decoded.issues.is_empty());
        let back: Vec<SynthTurn> = decoded.rows.into_iter().map(|(_, r)| r).collect();
        assert_eq!(back, rows);
    }

    #[test]
    fn a_missing_synth_column_is_named_as_synth_s() {
        let batch = SynthTurn::to_batch(&[row(1)]).unwrap();
        let copy = batch.schema().index_of("copy").unwrap();
        let keep: Vec<usize> = (0..batch.num_columns()).filter(|&i| i != copy).collect();
        let batch = batch.project(&keep).unwrap();
        let error = SynthTurn::from_batch(&batch, &Arc::from("s.parquet"), 0)
            .err()
            .unwrap();
        assert!(
            error
                .to_string()
                .starts_with("s.parquet: missing column `copy` required by the synth schema"),
            "{error}"
        );
    }
}
