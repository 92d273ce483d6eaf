fn main() {
    println!("ecs-provisioner");
}
