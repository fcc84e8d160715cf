//! Prints the configuration JSON Schema.
fn main() {
    println!("{:#}", gatehouse_config::json_schema());
}
