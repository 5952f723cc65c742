pub fn run(
    _fleet: std::sync::Arc<crate::core::fleet::Fleet>,
    _state: crate::core::state::State,
) -> i32 {
    0
}
