//! The deploy rehearsal: deploy/template.yaml created as a CloudFormation stack on a moto server of its own that
//! enforces IAM (tests/deploy/iam_moto.py), and the real binaries run as its tasks would run them: each task
//! definition's command and environment as deployed (`ZLE_CONFIG_TOML` as the template wrote it), the client secret
//! and the notification URL only where the task definition passes them, only the AWS endpoint pointed at moto (and
//! the simulator allowed as Zuora), and credentials that hold exactly the task's role's policies. The daily schedule's request (sent with the scheduler role's credentials),
//! sent twice a simulated day apart, exports every object (full loads, then increments) into the stack's own bucket;
//! the status task finds every object fresh; a job Zuora kills is asked for again; bad input lands in the
//! dead-letter queues; the operator task runs each operator command of the runbook; Zuora calls the notification
//! route (a stand-in sending with the route's role), and no secret is in any log line or task definition. Then the
//! record of moto's
//! authorization decisions must show no denial, and every grant of every role (each resource of each statement)
//! used by some call, except the few no call here can reach (each with its reason below) and the KMS grants (moto's
//! SQS and S3 call no KMS on the caller's behalf). A task wired to a queue or bucket the
//! stack does not create, a configuration the template renders wrong, a permission a command needs and its role
//! lacks, or a permission no command uses, fails here.

use aws_sdk_sqs::config::{Credentials, Region};
use common::messages::CompletionMessage;
use common::queue::{OutgoingMessage, Queue, SqsQueue};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use test_support::{NotifyRoute, Process, Scratch, test_python, tests_dir, unique, workspace_binary};

/// Statements no call of the rehearsal can use (`*`: the role's every statement), and why. Every other grant of
/// every role must be used.
const UNREACHABLE: &[(&str, &str, &str)] = &[
    ("ConsumerTaskRole", "ScaleInProtection", "called only inside ECS, through the task's metadata endpoint"),
    ("ConsumerTaskRole", "List", MISSING_KEYS),
    ("ProducerTaskRole", "LedgerList", MISSING_KEYS),
    ("SchedulerRole", "StatusTask", "EventBridge Scheduler starts the task; moto has no Scheduler"),
    ("SchedulerRole", "PassRoles", "EventBridge Scheduler starts the task; moto has no Scheduler"),
    ("SchedulerRole", "DeadLetters", "EventBridge Scheduler writes its own dead letters; moto has no Scheduler"),
    ("SubmitterExecutionRole", "*", "ECS reads the producer's and operator's secrets; moto runs no container"),
    ("ZuoraExecutionRole", "*", "ECS reads the secret into the consumer's task; moto runs no container"),
    ("PlainExecutionRole", "*", "ECS pulls the image, writes the logs (no inline grant); moto runs no container"),
    ("TableWriterTaskRole", "List", MISSING_KEYS),
    (
        "TableWriterTaskRole",
        "Catalog",
        "AWS checks a Glue table call against the catalog's, the database's and the table's ARN; moto (as \
         tests/deploy/iam_moto.py teaches it) against the table's only, which the rehearsal's calls do use",
    ),
];

/// The image the stack is created with: a fixed fake digest, in the form the template's `ContainerImage` allows.
const REHEARSAL_IMAGE: &str =
    "zuora-lake-export@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// The notification route's secret (its path) the stack is created with.
const NOTIFY_SECRET: &str = "rehearsal-notify-7c1f0a9e2b4d6c8e";

/// Why a role that reads keys which may not exist (ledger records, marks, metadata) holds s3:ListBucket.
const MISSING_KEYS: &str = "without s3:ListBucket, S3 answers a read of a missing key with 403 AccessDenied, not 404 \
    (which the services take as \"not written yet\"); moto answers 404 whatever the policy";

/// Whether a statement id names a KMS grant: moto's SQS and S3 make no KMS calls on the caller's behalf.
fn is_kms(sid: &str) -> bool {
    sid.ends_with("Key") || sid.starts_with("Kms")
}

/// The role each task definition runs with.
const TASK_ROLES: &[(&str, &str)] = &[
    ("producer", "ProducerTaskRole"),
    ("consumer", "ConsumerTaskRole"),
    ("status", "StatusTaskRole"),
    ("operator", "OperatorTaskRole"),
    ("table-writer", "TableWriterTaskRole"),
];

/// A moto server of this test's own, enforcing IAM once the stack's users exist, recording every decision.
struct IamMoto {
    endpoint: String,
    record: PathBuf,
    _server: Process,
}

impl IamMoto {
    fn start(dir: &Path) -> Self {
        let record = dir.join("decisions.jsonl");
        let script = tests_dir().join("deploy/iam_moto.py");
        let log = std::fs::File::create(dir.join("moto.log")).unwrap();
        let mut child = Command::new(test_python())
            .arg(&script)
            .arg("serve")
            .arg(&record)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let endpoint = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{line:?}")).to_owned();
        Self { endpoint, record, _server: Process(child) }
    }

    /// What moto denied so far, for a failure's message (what the audit at the end would say).
    fn denials(&self, users_file: &Path) -> Value {
        self.script(&["audit", self.record.to_str().unwrap(), users_file.to_str().unwrap()])["denied"].clone()
    }

    fn script(&self, args: &[&str]) -> Value {
        let script = tests_dir().join("deploy/iam_moto.py");
        let out = Command::new(test_python()).arg(&script).args(args).output().unwrap();
        assert!(out.status.success(), "iam_moto.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// The deployed stack, as its tasks see it.
struct Stack {
    deployed: Value,
    users: Value,
    endpoint: String,
    secret: String,
    /// Where the stand-in for the notification route listens (`http://127.0.0.1:PORT`), once it runs: the notify
    /// URL the stack keeps names API Gateway's host, which is not on this machine.
    notify_route: Option<String>,
    /// Every operator command's output, for the search for secrets.
    operator_log: PathBuf,
}

impl Stack {
    /// Creates the stack, then a user per role holding that role's policies; from then on moto enforces IAM.
    fn create(moto: &IamMoto, name: &str, parameters: &[(&str, &str)], users_file: &Path) -> Self {
        let script = tests_dir().join("deploy/rehearse_stack.py");
        let pairs = parameters.iter().map(|(k, v)| format!("{k}={v}"));
        let out = Command::new(test_python()).arg(&script).arg(&moto.endpoint).arg(name).args(pairs).output().unwrap();
        assert!(out.status.success(), "the stack: {}", String::from_utf8_lossy(&out.stderr));
        let deployed = serde_json::from_slice(&out.stdout).unwrap();
        let users = moto.script(&["users", &moto.endpoint, name]);
        std::fs::write(users_file, users.to_string()).unwrap();
        let secret = zuora_sim::SimConfig::default().client_secret;
        let operator_log = users_file.with_file_name("operator.log");
        Self { deployed, users, endpoint: moto.endpoint.clone(), secret, notify_route: None, operator_log }
    }

    /// The access key of a role's user.
    fn credentials(&self, role: &str) -> Credentials {
        let user = &self.users[role];
        assert!(user.is_object(), "no role {role} in the stack");
        Credentials::new(user["key"].as_str().unwrap(), user["secret"].as_str().unwrap(), None, None, "rehearsal")
    }

    /// The task's command as ECS would run it (or `argv` in its place, as `aws ecs run-task --overrides` does):
    /// its configuration as deployed, the AWS endpoint moto's, its role's credentials, the Zuora secret and the
    /// notification URL only if the task definition passes them.
    fn task(&self, family: &str, argv: Option<&[&str]>) -> Command {
        let task = &self.deployed["tasks"][family];
        assert!(task.is_object(), "no task definition {family}");
        let deployed: Vec<&str> = task["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        let argv = argv.unwrap_or(&deployed);
        let mut command = Command::new(workspace_binary(argv[0]));
        command
            .args(&argv[1..])
            .env_remove("ZLE_CONFIG")
            .env_remove("ZUORA_CLIENT_SECRET")
            .env_remove("ZLE_NOTIFY_URL")
            .env("RUST_LOG", "info");
        for (name, value) in task["environment"].as_object().unwrap() {
            let mut value = value.as_str().unwrap().to_owned();
            if name == "ZLE_CONFIG_TOML" {
                value = value.replacen("[aws]\n", &format!("[aws]\nendpoint_url = \"{}\"\n", self.endpoint), 1);
                // The simulator is not under Zuora's domain (the template's ZuoraBaseUrl pattern is not enforced by
                // moto; the binaries refuse it without this).
                value = value.replacen("[zuora]\n", "[zuora]\nallow_custom_base_url = true\n", 1);
            }
            command.env(name, value);
        }
        if task["secrets"].as_array().unwrap().iter().any(|s| s == "ZUORA_CLIENT_SECRET") {
            command.env("ZUORA_CLIENT_SECRET", &self.secret);
        }
        for (name, value) in task["stack_secrets"].as_object().unwrap() {
            let mut value = value.as_str().unwrap().to_owned();
            if name == "ZLE_NOTIFY_URL" {
                let route = self.notify_route.as_deref().expect("the notification route runs");
                let path = value.find("/job-finished").and_then(|end| value[..end].rfind('/')).unwrap();
                value = format!("{route}{}", &value[path..]);
            }
            command.env(name, value);
        }
        let role = TASK_ROLES.iter().find(|(f, _)| *f == family).map(|(_, role)| *role).unwrap();
        let credentials = self.credentials(role);
        command.env("AWS_ACCESS_KEY_ID", credentials.access_key_id());
        command.env("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key());
        command.env_remove("AWS_SESSION_TOKEN").env_remove("AWS_PROFILE");
        command
    }

    /// Runs an operator command in the operator task, as the runbook's `op` does; its output, checked for success.
    fn operator(&self, argv: &[&str]) -> String {
        let (code, stdout, stderr) = self.operator_exit(argv);
        assert_eq!(code, Some(0), "{argv:?} as the operator: {stdout}{stderr}");
        stdout
    }

    /// An operator command's exit code, stdout and stderr.
    fn operator_exit(&self, argv: &[&str]) -> (Option<i32>, String, String) {
        let out = self.task("operator", Some(argv)).output().unwrap();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let mut log = std::fs::OpenOptions::new().create(true).append(true).open(&self.operator_log).unwrap();
        std::io::Write::write_all(&mut log, [&out.stdout[..], &out.stderr[..]].concat().as_slice()).unwrap();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    }

    fn output(&self, key: &str) -> String {
        self.deployed["outputs"][key].as_str().unwrap_or_else(|| panic!("no output {key}")).to_owned()
    }

    /// A queue of the stack, called with a role's credentials.
    fn queue(&self, output: &str, role: &str) -> SqsQueue {
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version_latest()
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(self.credentials(role))
            .build();
        SqsQueue::new(aws_sdk_sqs::Client::from_conf(config), self.output(output))
    }

    /// Glue with the test's own (admin) credentials.
    fn glue(&self) -> aws_sdk_glue::Client {
        let config = aws_sdk_glue::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_glue::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(self.credentials("admin"))
            .build();
        aws_sdk_glue::Client::from_conf(config)
    }

    /// S3 with the test's own (admin) credentials.
    fn s3(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .credentials_provider(self.credentials("admin"))
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }
}

/// Completion messages on the lake queue until `files` distinct files are announced (or two minutes pass: then
/// the failure says what moto denied meanwhile).
async fn announced(
    lake: &SqsQueue,
    files: usize,
    seen: &mut BTreeSet<String>,
    denied: impl Fn() -> Value,
) -> Vec<CompletionMessage> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut new = Vec::new();
    while new.len() < files {
        assert!(Instant::now() < deadline, "{} of {files} files announced; moto denied: {:#}", new.len(), denied());
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
#[ignore = "real-protocol tier: ./tests/run.sh (moto's CloudFormation and IAM)"]
async fn the_stack_as_created_runs_every_service_and_operator_command_with_its_roles_permissions_only() {
    let mut sim_config = zuora_sim::SimConfig::default();
    sim_config.settings.job_execution_secs = 0.2;
    // A multi-entity tenant: every call must name the entity the stack was deployed for.
    sim_config.entity_ids = vec!["8a8082c4-rehearsal".into(), "8a8082c4-other".into()];
    let sim = zuora_sim::Simulator::start(sim_config).await.unwrap();
    let name = unique("zle");
    let bucket = format!("{name}-raw");
    let database = name.replace('-', "_");
    let base_url = sim.base_url();
    // The tasks' logs and moto's decisions are kept there if the test fails.
    let scratch = Scratch::new(&name);
    let dir = scratch.path();
    let moto = IamMoto::start(dir);
    let mut stack = Stack::create(
        &moto,
        &name,
        &[
            // By digest, as the template requires (a tag is refused); moto pulls nothing.
            ("ContainerImage", REHEARSAL_IMAGE),
            ("RawBucketName", &bucket),
            ("ZuoraBaseUrl", &base_url),
            ("ZuoraClientId", &zuora_sim::SimConfig::default().client_id),
            ("ZuoraClientSecretArn", "arn:aws:secretsmanager:us-east-1:123456789012:secret:zuora-AbCdEf"),
            ("ZuoraEntityId", "8a8082c4-rehearsal"),
            ("ZuoraPartner", "rehearsal"),
            ("ZuoraProject", "zuora-datalake-export-rehearsal"),
            ("AlarmEmail", "data-platform@example.com"),
            ("TablesGlueDatabase", &database),
            ("NotifySecret", NOTIFY_SECRET),
        ],
        &dir.join("users.json"),
    );
    // Completion pushed: Zuora calls the route, a stand-in here (API Gateway's host is not on this machine) that
    // sends to the stack's jobs queue with the route's own role.
    let route = NotifyRoute::start(Arc::new(stack.queue("JobsQueueUrl", "NotifyRole")), NOTIFY_SECRET).await;
    let route_address = route.notify_url();
    stack.notify_route = Some(route_address[..route_address.find(&format!("/{NOTIFY_SECRET}/")).unwrap()].to_owned());
    for family in ["producer", "operator"] {
        assert!(
            stack.deployed["tasks"][family]["stack_secrets"]["ZLE_NOTIFY_URL"].is_string(),
            "{family} submits jobs"
        );
    }
    for family in ["consumer", "status", "table-writer"] {
        assert_eq!(stack.deployed["tasks"][family]["stack_secrets"], serde_json::json!({}), "{family} submits none");
    }
    assert_eq!(stack.deployed["tasks"]["status"]["secrets"], serde_json::json!([]), "status runs without the secret");
    let producer = Process::start(stack.task("producer", None), &dir.join("producer.log"));
    let consumer = Process::start(stack.task("consumer", None), &dir.join("consumer.log"));
    let writer = Process::start(stack.task("table-writer", None), &dir.join("table-writer.log"));

    // The schedule sends the daily request with its own role; the lake reads with its own (not the stack's).
    let schedule = stack.queue("RequestsQueueUrl", "SchedulerRole");
    let lake = stack.queue("LakeQueueUrl", "admin");
    let daily = stack.deployed["daily_input"].as_str().unwrap().to_owned();
    let objects = common::catalogue::Catalogue::builtin().objects.len();
    let mut seen = BTreeSet::new();
    let users_file = dir.join("users.json");
    let denied = || moto.denials(&users_file);

    // Day 1, as the schedule sends it: every object's first export, a full load, in the stack's bucket.
    schedule.send(OutgoingMessage::new(daily.clone())).await.unwrap();
    let day_one = announced(&lake, objects, &mut seen, &denied).await;
    assert!(day_one.iter().all(|c| c.full && c.bucket == bucket), "{day_one:?}");
    // Day 2, after a day of changes at Zuora: increments.
    let control = sim.control();
    control.advance_clock(Duration::from_secs(12 * 3600));
    for object in common::catalogue::Catalogue::builtin().objects {
        control
            .mutate(
                &object.name,
                zuora_sim::Mutation { insert: 2, update: 3, delete: 1, ..zuora_sim::Mutation::default() },
            )
            .unwrap();
    }
    control.advance_clock(Duration::from_secs(12 * 3600));
    schedule.send(OutgoingMessage::new(daily)).await.unwrap();
    let day_two = announced(&lake, objects, &mut seen, &denied).await;
    assert!(day_two.iter().all(|c| !c.full && c.window.from.is_some()), "{day_two:?}");
    let s3 = stack.s3();
    for completion in day_one.iter().chain(&day_two) {
        let stored = s3.head_object().bucket(&completion.bucket).key(&completion.key).send().await;
        assert!(stored.is_ok(), "{} is in the bucket", completion.key);
    }

    // The table writer applied both days' files to one Delta table per object under the stack's tables location.
    let location_prefix = stack.output("TablesLocation");
    assert_eq!(stack.output("TablesGlueDatabase"), database);
    let prefix = location_prefix.strip_prefix(&format!("s3://{bucket}/")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    for completion in &day_one {
        // The table's creation, then a commit per day.
        let log = format!("{prefix}/{}/_delta_log/", completion.object);
        loop {
            let listed = s3.list_objects_v2().bucket(&bucket).prefix(&log).send().await.unwrap();
            let commits = listed.contents().iter().filter(|o| o.key().unwrap_or_default().ends_with(".json")).count();
            if commits >= 3 {
                break;
            }
            assert!(Instant::now() < deadline, "{log}: {commits} commits; moto denied: {:#}", denied());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Each registered in the stack's Glue database, where Athena finds it by name.
    let glue = stack.glue();
    for completion in &day_one {
        let name = completion.object.to_ascii_lowercase();
        let entry = glue.get_table().database_name(&database).name(&name).send().await;
        let entry = entry.unwrap_or_else(|e| panic!("{database}.{name}: {e:?}")).table.unwrap();
        let location = entry.storage_descriptor.unwrap().location.unwrap();
        assert_eq!(location, format!("{location_prefix}/{}/", completion.object));
    }

    // The status task, with its own configuration, role and no secret: every object fresh, and its metric line.
    let status = stack.task("status", None).output().unwrap();
    let said = String::from_utf8_lossy(&status.stdout).into_owned();
    let status_output = format!("{said}{}", String::from_utf8_lossy(&status.stderr));
    assert!(status.status.success(), "{said}{}", String::from_utf8_lossy(&status.stderr));
    assert!(said.contains(r#""StaleObjects":0.0"#), "{said}");

    // The runbook's operator commands, each in the operator task with the operator role.
    let report: Value = serde_json::from_str(&stack.operator(&["producer", "status", "--json"])).unwrap();
    assert_eq!(report["stale"], 0, "{report}");
    stack.operator(&["producer", "check-config"]);
    stack.operator(&["producer", "backfill", "--from", "2022-05-04", "--objects", "Account"]);
    let backfilled = announced(&lake, 1, &mut seen, &denied).await;
    assert_eq!(backfilled[0].object, "Account");
    // Zuora kills the submitted job's query: the consumer asks for the window again, the producer serves that.
    control.abort_next_batch("Invoice", "rehearsal: the query was killed");
    stack.operator(&["producer", "submit", r#"{"exportFromDate":"afterLastIncrement","objects":["Invoice"]}"#]);
    let submitted = announced(&lake, 1, &mut seen, &denied).await;
    assert_eq!(submitted[0].object, "Invoice");
    // Bad input from outside goes to the dead-letter queues with its reason, by the services' own roles.
    let (requests_dlq, jobs_dlq) =
        (stack.queue("RequestsDeadLetterQueueUrl", "admin"), stack.queue("JobsDeadLetterQueueUrl", "admin"));
    let (tables, tables_dlq) =
        (stack.queue("TablesQueueUrl", "admin"), stack.queue("TablesDeadLetterQueueUrl", "admin"));
    let bad_request = OutgoingMessage::new(r#"{"exportFromDate":"someday"}"#);
    stack.queue("RequestsQueueUrl", "admin").send(bad_request).await.unwrap();
    stack.queue("JobsQueueUrl", "admin").send(OutgoingMessage::new("not a job message")).await.unwrap();
    let not_a_completion = OutgoingMessage::new("not a completion").grouped("Account").deduplicated("bad-1");
    tables.send(not_a_completion).await.unwrap();
    for dlq in [&requests_dlq, &jobs_dlq, &tables_dlq] {
        let deadline = Instant::now() + Duration::from_secs(60);
        while dlq.depth().await.unwrap().visible == 0 {
            assert!(Instant::now() < deadline, "{} stays empty; moto denied: {:#}", dlq.name(), denied());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // A request dead-lettered while Zuora was down: looked at (with its reason), redriven, served by the producer.
    let dead = OutgoingMessage::new(
        r#"{"exportFromDate":"afterLastIncrement","objects":["Contact"],"requestId":"redriven-1"}"#,
    )
    .attribute("reason", "Zuora is down for maintenance");
    requests_dlq.send(dead).await.unwrap();
    let looked = stack.operator(&["producer", "redrive", "--queue", "requests", "--dry-run"]);
    assert!(looked.contains("reason: Zuora is down for maintenance"), "{looked}");
    assert!(looked.contains("someday"), "the producer's own dead letter, with its reason: {looked}");
    stack.operator(&["producer", "redrive", "--queue", "requests"]);
    let redriven = announced(&lake, 1, &mut seen, &denied).await;
    assert_eq!(redriven[0].object, "Contact");
    for queue in ["jobs", "lake", "tables"] {
        stack.operator(&["producer", "redrive", "--queue", queue, "--dry-run"]);
        stack.operator(&["producer", "redrive", "--queue", queue]);
    }
    // Zuora loses deletions: two Accounts deleted, then 31 days before the next increment of Account, by which time
    // Zuora has purged them. The audit finds them in the lake; its repair publishes their deletion.
    control.advance_clock(Duration::from_secs(3600));
    let purged = control.mutate("Account", zuora_sim::Mutation { delete: 2, ..zuora_sim::Mutation::default() });
    assert_eq!(purged.unwrap().deleted.len(), 2);
    control.advance_clock(Duration::from_secs(31 * 86_400));
    let account = OutgoingMessage::new(r#"{"exportFromDate":"afterLastIncrement","objects":["Account"]}"#);
    stack.queue("RequestsQueueUrl", "admin").send(account).await.unwrap();
    announced(&lake, 1, &mut seen, &denied).await;
    // A repair deleting more than its limit deletes nothing and exits 3; forced, it deletes.
    let limited = ["producer", "audit", "--objects", "Account", "--repair", "--max-delete-percent", "0.1"];
    let (code, said, stderr) = stack.operator_exit(&limited);
    assert_eq!(code, Some(3), "{said}{stderr}");
    assert!(said.contains("repaired nothing: it would delete 2"), "{said}");
    let (code, said, stderr) =
        stack.operator_exit(&["producer", "audit", "--objects", "Account", "--repair", "--force"]);
    assert_eq!(code, Some(1), "{said}{stderr}");
    assert!(
        said.contains("DIFFERENT, 2 gone from Zuora") && said.contains("published the deletion of 2 rows"),
        "{said}"
    );
    let deletions = announced(&lake, 1, &mut seen, &denied).await;
    assert_eq!((deletions[0].object.as_str(), deletions[0].record_count), ("Account", 2));
    let again = stack.operator(&["producer", "audit", "--objects", "Account"]);
    assert!(again.trim_end().ends_with(": equal"), "{again}");
    let notified = control.calls().get("NOTIFY sent").copied().unwrap_or(0);
    assert!(notified > 0, "Zuora called the route: {:?}", control.calls());
    assert!(producer.terminate().success(), "the producer stops cleanly on SIGTERM");
    assert!(consumer.terminate().success(), "the consumer stops cleanly on SIGTERM");
    assert!(writer.terminate().success(), "the table writer stops cleanly on SIGTERM");

    // No secret left its store: not in a log line of any task (the services', the status task's, every operator
    // command's), nor in a task definition as rendered.
    let mut searched: Vec<(String, String)> = stack.deployed["tasks"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(family, task)| (format!("the {family} task definition"), task["definition"].to_string()))
        .collect();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") && path.file_name().is_some_and(|n| n != "moto.log") {
            searched.push((path.display().to_string(), std::fs::read_to_string(&path).unwrap()));
        }
    }
    searched.push(("the status task".to_owned(), status_output));
    // Five task definitions, the producer's, consumer's, table writer's and operator's logs, the status task's.
    assert_eq!(searched.len(), 10, "{:?}", searched.iter().map(|(what, _)| what).collect::<Vec<_>>());
    for (what, text) in &searched {
        for secret in [NOTIFY_SECRET, stack.secret.as_str()] {
            assert_eq!(text.matches(secret).count(), 0, "{what} holds a secret");
        }
    }
    drop(route);

    // Every call was allowed, and every statement was needed by some call.
    let audit = moto.script(&["audit", moto.record.to_str().unwrap(), dir.join("users.json").to_str().unwrap()]);
    assert!(audit["decisions"].as_u64().unwrap() > 100, "{audit}");
    let denied: Vec<&Value> = audit["denied"].as_array().unwrap().iter().collect();
    assert!(denied.is_empty(), "calls a role's policy does not allow: {denied:#?}");
    let unused: Vec<String> = audit["unused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["role"].as_str().unwrap(), u["sid"].as_str().unwrap(), &u["resource"], &u["statement"]["Action"]))
        .filter(|(role, sid, _, _)| {
            !is_kms(sid) && !UNREACHABLE.iter().any(|(r, s, _)| r == role && (*s == "*" || s == sid))
        })
        .map(|(role, sid, resource, actions)| format!("{role}.{sid}: {actions} on {resource}"))
        .collect();
    assert!(unused.is_empty(), "grants no call used (remove them, or say in UNREACHABLE why): {unused:#?}");
}
