fn main() {
    // sqlx::migrate! embeds the migration files at compile time: rebuild when one is added.
    println!("cargo:rerun-if-changed=migrations");
}
