//! Appends validated records, with their lineage, to Arrow column builders.

use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder,
    Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::record_batch::RecordBatch;
use schemas::position::{Offset, Partition};
use schemas::{EventSchema, FieldType, Record, Value};

enum Column {
    String(StringBuilder),
    I64(Int64Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl Column {
    fn new(field_type: FieldType) -> Self {
        match field_type {
            FieldType::String => Column::String(StringBuilder::new()),
            FieldType::I64 => Column::I64(Int64Builder::new()),
            FieldType::F64 => Column::F64(Float64Builder::new()),
            FieldType::Bool => Column::Bool(BooleanBuilder::new()),
            FieldType::Timestamp => {
                Column::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
        }
    }

    fn append(&mut self, value: Option<&Value>) {
        match (self, value) {
            (Column::String(b), Some(Value::String(v))) => b.append_value(v),
            (Column::I64(b), Some(Value::I64(v))) => b.append_value(*v),
            (Column::F64(b), Some(Value::F64(v))) => b.append_value(*v),
            (Column::Bool(b), Some(Value::Bool(v))) => b.append_value(*v),
            (Column::Timestamp(b), Some(Value::Timestamp(v))) => b.append_value(*v),
            (Column::String(b), _) => b.append_null(),
            (Column::I64(b), _) => b.append_null(),
            (Column::F64(b), _) => b.append_null(),
            (Column::Bool(b), _) => b.append_null(),
            (Column::Timestamp(b), _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::String(b) => Arc::new(b.finish()),
            Column::I64(b) => Arc::new(b.finish()),
            Column::F64(b) => Arc::new(b.finish()),
            Column::Bool(b) => Arc::new(b.finish()),
            Column::Timestamp(b) => Arc::new(b.finish()),
        }
    }
}

/// Builds one Arrow batch in the Delta table's layout: typed fields, `event_date`, lineage.
pub struct BatchBuilder {
    schema: SchemaRef,
    fields: Vec<Column>,
    event_date: Date32Builder,
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    ingested_at: TimestampMicrosecondBuilder,
    key: BinaryBuilder,
    rows: usize,
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

impl BatchBuilder {
    /// An empty builder for `schema`.
    pub fn new(schema: &EventSchema) -> Self {
        Self {
            schema: schema.delta_arrow_schema(),
            fields: schema
                .fields
                .iter()
                .map(|f| Column::new(f.field_type))
                .collect(),
            event_date: Date32Builder::new(),
            topic: StringBuilder::new(),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            ingested_at: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            key: BinaryBuilder::new(),
            rows: 0,
        }
    }

    /// Appends a valid record, its position and its message key.
    pub fn append(
        &mut self,
        record: &Record,
        topic: &str,
        partition: Partition,
        offset: Offset,
        ingested_at_micros: i64,
        key: Option<&[u8]>,
    ) {
        for (column, value) in self.fields.iter_mut().zip(&record.values) {
            column.append(value.as_ref());
        }
        self.event_date
            .append_value(record.event_time_micros.div_euclid(MICROS_PER_DAY) as i32);
        self.topic.append_value(topic);
        self.partition.append_value(partition);
        self.offset.append_value(offset);
        self.ingested_at.append_value(ingested_at_micros);
        self.key.append_option(key);
        self.rows += 1;
    }

    /// The batch of everything appended; the builder is empty afterwards.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = self.fields.iter_mut().map(Column::finish).collect();
        columns.push(Arc::new(self.event_date.finish()));
        columns.push(Arc::new(self.topic.finish()));
        columns.push(Arc::new(self.partition.finish()));
        columns.push(Arc::new(self.offset.finish()));
        columns.push(Arc::new(self.ingested_at.finish()));
        columns.push(Arc::new(self.key.finish()));
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), columns)
    }
}
