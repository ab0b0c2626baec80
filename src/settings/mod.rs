//! Each library's settings, built from the layered configuration in one place: libraries take
//! their own typed settings, never the whole `BraidConfig`.

pub mod alerts;
pub mod batch_layer;
pub mod jobs;
pub mod serving;
pub mod speed_layer;
