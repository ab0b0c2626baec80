mod deliveries;
mod retention;
