//! The deploy rehearsal: deploy/template.yaml created as a CloudFormation stack on the moto server
//! (tests/deploy/rehearse_stack.py), and the real binaries run as its tasks would run them: each task definition's
//! command and environment as deployed (`ZLE_CONFIG_TOML` as the template wrote it), the client secret only where
//! the task definition passes it, and only the AWS endpoint pointed at moto. The daily schedule's input, sent twice
//! a simulated day apart, exports every object (full loads, then increments) into the stack's own bucket; the
//! status task then finds every object fresh. A task wired to a queue or bucket the stack does not create, or a
//! configuration the template renders wrong, fails here.

use common::messages::CompletionMessage;
use common::queue::{OutgoingMessage, Queue, SqsQueue};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};
use test_support::{Aws, Process, Scratch, aws_config, test_python, tests_dir, unique, workspace_binary};

/// The deployed stack, as its tasks see it.
struct Stack {
    deployed: Value,
    endpoint: String,
    secret: String,
}

impl Stack {
    fn create(name: &str, parameters: &[(&str, &str)]) -> Self {
        let endpoint = aws_config().endpoint_url.expect("the moto endpoint");
        let script = tests_dir().join("deploy/rehearse_stack.py");
        let pairs = parameters.iter().map(|(k, v)| format!("{k}={v}"));
        let out = Command::new(test_python()).arg(&script).arg(&endpoint).arg(name).args(pairs).output().unwrap();
        assert!(out.status.success(), "the stack: {}", String::from_utf8_lossy(&out.stderr));
        let deployed = serde_json::from_slice(&out.stdout).unwrap();
        Self { deployed, endpoint, secret: zuora_sim::SimConfig::default().client_secret }
    }

    /// The task's command as ECS would run it: its configuration as deployed, the AWS endpoint moto's, the Zuora
    /// secret only if the task definition passes it.
    fn task(&self, family: &str) -> Command {
        let task = &self.deployed["tasks"][family];
        let argv: Vec<&str> = task["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        let mut command = Command::new(workspace_binary(argv[0]));
        command.args(&argv[1..]).env_remove("ZLE_CONFIG").env_remove("ZUORA_CLIENT_SECRET").env("RUST_LOG", "info");
        for (name, value) in task["environment"].as_object().unwrap() {
            let mut value = value.as_str().unwrap().to_owned();
            if name == "ZLE_CONFIG_TOML" {
                value = value.replacen("[aws]\n", &format!("[aws]\nendpoint_url = \"{}\"\n", self.endpoint), 1);
            }
            command.env(name, value);
        }
        if task["secrets"].as_array().unwrap().iter().any(|s| s == "ZUORA_CLIENT_SECRET") {
            command.env("ZUORA_CLIENT_SECRET", &self.secret);
        }
        command
    }

    fn output(&self, key: &str) -> String {
        self.deployed["outputs"][key].as_str().unwrap_or_else(|| panic!("no output {key}")).to_owned()
    }
}

/// Completion messages on the lake queue until `files` distinct files are announced (or two minutes pass).
async fn announced(lake: &SqsQueue, files: usize, seen: &mut BTreeSet<String>) -> Vec<CompletionMessage> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut new = Vec::new();
    while new.len() < files {
        assert!(Instant::now() < deadline, "{} of {files} files announced", new.len());
        for message in lake.receive(10, Duration::from_secs(1)).await.unwrap() {
            let completion: CompletionMessage = serde_json::from_str(&message.body).unwrap();
            lake.delete(&message.receipt).await.unwrap();
            if seen.insert(format!("{}/{}", completion.file_id, completion.segment)) {
                new.push(completion);
            }
        }
    }
    new
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "real-protocol tier: ./tests/run.sh (moto's CloudFormation)"]
async fn the_stack_as_created_runs_two_days_of_exports_with_its_tasks_configuration() {
    let mut sim_config = zuora_sim::SimConfig::default();
    sim_config.settings.job_execution_secs = 0.2;
    let sim = zuora_sim::Simulator::start(sim_config).await.unwrap();
    let name = unique("zle");
    let bucket = format!("{name}-raw");
    let base_url = sim.base_url();
    let stack = Stack::create(
        &name,
        &[
            ("ContainerImage", "zuora-lake-export:rehearsal"),
            ("RawBucketName", &bucket),
            ("ZuoraBaseUrl", &base_url),
            ("ZuoraClientId", &zuora_sim::SimConfig::default().client_id),
            ("ZuoraClientSecretArn", "arn:aws:secretsmanager:us-east-1:123456789012:secret:zuora-AbCdEf"),
            ("ZuoraPartner", "rehearsal"),
            ("ZuoraProject", "zuora-datalake-export-rehearsal"),
            ("AlarmEmail", "data-platform@example.com"),
        ],
    );
    assert_eq!(stack.deployed["tasks"]["status"]["secrets"], serde_json::json!([]), "status runs without the secret");
    // The tasks' logs are kept there if the test fails.
    let scratch = Scratch::new(&name);
    let dir = scratch.path();
    let producer = Process::start(stack.task("producer"), &dir.join("producer.log"));
    let consumer = Process::start(stack.task("consumer"), &dir.join("consumer.log"));

    let aws = Aws::connect().await;
    let requests = SqsQueue::new(aws.sqs.clone(), stack.output("RequestsQueueUrl"));
    let lake = SqsQueue::new(aws.sqs.clone(), stack.output("LakeQueueUrl"));
    let daily = stack.deployed["daily_input"].as_str().unwrap().to_owned();
    let objects = common::catalogue::Catalogue::builtin().objects.len();
    let mut seen = BTreeSet::new();

    // Day 1, as the schedule sends it: every object's first export, a full load, in the stack's bucket.
    requests.send(OutgoingMessage::new(daily.clone())).await.unwrap();
    let day_one = announced(&lake, objects, &mut seen).await;
    assert!(day_one.iter().all(|c| c.full && c.bucket == bucket), "{day_one:?}");
    // Day 2, after a day of changes at Zuora: increments.
    let control = sim.control();
    control.advance_clock(Duration::from_secs(12 * 3600));
    for object in common::catalogue::Catalogue::builtin().objects {
        control.mutate(&object.name, zuora_sim::Mutation { insert: 2, update: 3, delete: 1 }).unwrap();
    }
    control.advance_clock(Duration::from_secs(12 * 3600));
    requests.send(OutgoingMessage::new(daily)).await.unwrap();
    let day_two = announced(&lake, objects, &mut seen).await;
    assert!(day_two.iter().all(|c| !c.full && c.window.from.is_some()), "{day_two:?}");
    for completion in day_one.iter().chain(&day_two) {
        let stored = aws.s3.head_object().bucket(&completion.bucket).key(&completion.key).send().await;
        assert!(stored.is_ok(), "{} is in the bucket", completion.key);
    }

    // The status task, with its own configuration and no secret: every object fresh.
    let status = stack.task("status").output().unwrap();
    assert!(
        status.status.success(),
        "{}{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(producer.terminate().success(), "the producer stops cleanly on SIGTERM");
    assert!(consumer.terminate().success(), "the consumer stops cleanly on SIGTERM");
}
