use super::*;

const GOOD: &str = r#"
    catalogue = "objects.toml"
    [zuora]
    base_url = "https://rest.zuora.com"
    client_id = "id"
    [session]
    partner = "p"
    project = "zuora-datalake-export"
    [queues]
    requests = "https://sqs.eu-west-1.amazonaws.com/1/requests"
    requests_dlq = "https://sqs.eu-west-1.amazonaws.com/1/requests-dlq"
    jobs = "https://sqs.eu-west-1.amazonaws.com/1/jobs"
    jobs_dlq = "https://sqs.eu-west-1.amazonaws.com/1/jobs-dlq"
    lake = "https://sqs.eu-west-1.amazonaws.com/1/lake.fifo"
    lake_dlq = "https://sqs.eu-west-1.amazonaws.com/1/lake-dlq.fifo"
    [ledger]
    bucket = "ledger-bucket"
"#;

#[test]
fn the_secret_comes_from_the_environment_and_is_masked() {
    let config = Config::parse(GOOD, "t", Some(Secret::new("s3cr3t"))).unwrap();
    assert_eq!(config.zuora.client_secret.expose(), "s3cr3t");
    assert!(!format!("{config:?}").contains("s3cr3t"));
    assert_eq!(config.ledger.prefix, "zuora-lake-export/ledger/");
    assert_eq!(config.producer.stale_after_hours, 36);
}

#[test]
fn the_printed_configuration_masks_the_secret_and_reads_back_as_the_same_configuration() {
    let text = GOOD.replace("catalogue = \"objects.toml\"", "raw_bucket = \"acme-raw\"");
    let config = Config::parse(&text, "t", Some(Secret::new("s3cr3t"))).unwrap();
    let printed = config.checked().unwrap();
    assert!(!printed.contains("s3cr3t") && printed.contains(r#"client_secret = "***""#), "{printed}");
    assert!(printed.contains("stale_after_hours = 36"), "defaults are filled in: {printed}");
    assert!(printed.contains("# catalogue: 13 objects: Account, "), "{printed}");
    let again = Config::parse(&printed, "printed", Some(Secret::new("s3cr3t"))).unwrap();
    assert_eq!(format!("{again:?}"), format!("{config:?}"));
}

#[test]
fn raw_bucket_moves_the_builtin_catalogue() {
    let text = GOOD.replace("catalogue = \"objects.toml\"", "raw_bucket = \"acme-raw\"");
    let config = Config::parse(&text, "t", Some(Secret::new("s"))).unwrap();
    let catalogue = config.catalogue().unwrap();
    assert!(catalogue.objects.iter().all(|o| o.target.bucket == "acme-raw"));
}

#[test]
fn a_builtin_catalogue_is_named_with_its_prefix() {
    let text = GOOD.replace("catalogue = \"objects.toml\"", "catalogue = \"builtin:old-export\"");
    let config = Config::parse(&text, "t", Some(Secret::new("s"))).unwrap();
    assert_eq!(config.catalogue().unwrap().objects.len(), 13);
    let text = GOOD.replace("catalogue = \"objects.toml\"", "catalogue = \"builtin:newest\"");
    let error = Config::parse(&text, "t", Some(Secret::new("s"))).unwrap().catalogue().unwrap_err();
    assert!(error.to_string().contains("builtin:newest: no such built-in catalogue"), "{error}");
}

#[test]
fn the_example_configurations_are_valid() {
    let examples = [
        ("local", include_str!("../../../deploy/examples/local.toml")),
        ("moto-sim", include_str!("../../../deploy/examples/moto-sim.toml")),
        ("production", include_str!("../../../deploy/examples/production.toml")),
    ];
    for (name, text) in examples {
        let config = Config::parse(text, name, Some(Secret::new("s"))).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.queues.in_memory(), name == "local", "{name}");
    }
}

/// The configuration the deployment template writes into the tasks, as CloudFormation renders it: the first
/// `ZLE_CONFIG_TOML` block, its variables substituted, the old export's drop-in on or off (and with it an entity).
fn template_configuration(old_export: bool, other_account: bool) -> String {
    let template = include_str!("../../../deploy/template.yaml");
    let start = template.find("ZLE_CONFIG_TOML").unwrap();
    let body = &template[start..];
    let body = &body[body.find("- |\n").unwrap() + 4..body.find("- Catalogue:").unwrap()];
    let mut text: String = body.lines().map(|l| format!("{}\n", l.trim())).collect();
    let variables = [
        (
            "${Catalogue}",
            if old_export { "catalogue = \"builtin:old-export\"" } else { "raw_bucket = \"${RawBucketName}\"" },
        ),
        (
            "${OldSession}",
            if old_export { "version = \"1.2\"\nincrement_job_name = \"zuora-datalake-export\"" } else { "" },
        ),
        ("${ObjectAcl}", if other_account { "object_acl = \"bucket-owner-full-control\"" } else { "" }),
        // The entity line (ZuoraEntityId) and completion pushed (NotifySecret) are set in the drop-in's variant,
        // left out in the other.
        ("${Entity}", if old_export { "entity_id = \"8a8082c4-north\"" } else { "" }),
        ("${SafetyNetPolls}", if old_export { "poll_delay_secs = 60\nmax_poll_delay_secs = 900" } else { "" }),
        (
            "${Owners}",
            if old_export {
                "expected_bucket_owner = \"${AWS::AccountId}\"\nbucket_owners = { \"${OldExportBucketPattern}\" = \"210987654321\" }"
            } else {
                "expected_bucket_owner = \"${AWS::AccountId}\""
            },
        ),
    ];
    for (name, value) in variables {
        text = text.replace(name, value);
    }
    let queue = "https://sqs.eu-west-1.amazonaws.com/1/q";
    for (name, value) in [
        ("${RawBucketName}", "acme-zuora-raw"),
        ("${ZuoraBaseUrl}", "https://rest.zuora.com"),
        ("${ZuoraClientId}", "id"),
        ("${ZuoraDataCenter}", "eu"),
        ("${ZuoraPartner}", "p"),
        ("${ZuoraProject}", "zuora-datalake-export-2"),
        ("${AWS::Region}", "eu-west-1"),
        ("${AWS::AccountId}", "123456789012"),
        ("${OldExportBucketPattern}", "ophan-raw-zuora-increment-*"),
        ("${StaleAfterHours}", "36"),
        ("${JobsPerConsumerTask}", "2"),
        ("${LakeQueue}", "https://sqs.eu-west-1.amazonaws.com/1/lake.fifo"),
        ("${LakeDeadLetterQueue}", "https://sqs.eu-west-1.amazonaws.com/1/lake-dlq.fifo"),
        ("${TablesQueue}", "https://sqs.eu-west-1.amazonaws.com/1/tables.fifo"),
        ("${TablesDeadLetterQueue}", "https://sqs.eu-west-1.amazonaws.com/1/tables-dlq.fifo"),
        ("${TablesGlueDatabase}", "zuora"),
        ("${RequestsQueue}", queue),
        ("${RequestsDeadLetterQueue}", queue),
        ("${JobsQueue}", queue),
        ("${JobsDeadLetterQueue}", queue),
    ] {
        text = text.replace(name, value);
    }
    assert!(!text.contains("${"), "a variable left: {text}");
    text
}

/// The notification URL the template keeps in its `NotifyUrlSecret`, as CloudFormation renders its `!Sub`
/// (`${!JOBID}` is a literal `${JOBID}`): the tasks that submit jobs get it as `ZLE_NOTIFY_URL`.
fn template_notify_url() -> String {
    let template = include_str!("../../../deploy/template.yaml");
    let line =
        template.lines().find(|l| l.trim_start().starts_with("SecretString: !Sub 'https://${NotifyApi}")).unwrap();
    line[line.find('\'').unwrap() + 1..line.rfind('\'').unwrap()]
        .replace("${NotifyApi}", "a1b2c3d4e5")
        .replace("${AWS::Region}", "eu-west-1")
        .replace("${AWS::URLSuffix}", "amazonaws.com")
        .replace("${NotifySecret}", "0123456789abcdefghijklmnop")
        .replace("${!", "${")
}

#[test]
fn the_templates_configuration_is_valid_with_and_without_the_old_exports_drop_in() {
    let secret = || Some(Secret::new("s"));
    let plain = Config::parse(&template_configuration(false, false), "template", secret()).unwrap();
    assert_eq!((plain.raw_bucket.as_deref(), plain.catalogue.clone()), (Some("acme-zuora-raw"), None));
    assert_eq!((plain.session.version.as_str(), plain.aws.object_acl), ("1.1", None));
    let secrets = EnvSecrets { client_secret: secret(), notify_url: Some(Secret::new(template_notify_url())) };
    let old = Config::parse_with(&template_configuration(true, true), "template", &secrets).unwrap();
    assert_eq!((plain.zuora.entity_id.as_deref(), old.zuora.entity_id.as_deref()), (None, Some("8a8082c4-north")));
    assert_eq!(plain.producer.notify_url, None);
    assert_eq!(
        old.producer.notify_url.as_ref().map(Secret::expose),
        Some(
            "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/0123456789abcdefghijklmnop/job-finished?job=${JOBID}"
        ),
        "Zuora fills in ${{JOBID}}; the route puts the job parameter on the queue"
    );
    let printed = format!("{old:?}\n{}", old.checked().unwrap());
    assert!(!printed.contains("0123456789abcdefghijklmnop"), "the route's secret is never printed: {printed}");
    assert_eq!((old.consumer.poll_delay_secs, old.consumer.max_poll_delay_secs), (60, 900), "polls as a safety net");
    assert_eq!(old.catalogue().unwrap().objects.len(), 13);
    assert_eq!(old.catalogue.as_deref(), Some(std::path::Path::new("builtin:old-export")));
    assert_eq!(
        (old.session.version.as_str(), old.session.increment_job_name.as_str()),
        ("1.2", "zuora-datalake-export")
    );
    assert_eq!(old.aws.object_acl, Some(crate::aws::ObjectAcl::BucketOwnerFullControl));
    // Every bucket pinned to its owner: the stack's account, and the old buckets' own.
    for config in [&plain, &old] {
        assert_eq!(config.aws.expected_bucket_owner.as_deref(), Some("123456789012"));
    }
    assert_eq!(old.aws.bucket_owners["ophan-raw-zuora-increment-*"], "210987654321");
}

#[test]
fn errors_name_the_field() {
    // Without a secret the configuration loads (commands that never call Zuora need none); a client does not.
    let no_secret = Config::parse(GOOD, "t", None).unwrap();
    let missing_secret = crate::zuora::ZuoraClient::new(no_secret.zuora).err().unwrap().to_string();
    assert!(
        missing_secret.contains("zuora.client_secret") && missing_secret.contains(CLIENT_SECRET_ENV),
        "{missing_secret}"
    );
    let cases = [
        (GOOD.replace("lake.fifo", "lake"), "queues.lake: must be a FIFO queue"),
        (format!("{GOOD}\n[tables]\nlocation = \"s3://b/no-slash\""), "tables.location: s3://BUCKET/"),
        (
            format!("{GOOD}\n[tables]\nlocation = \"s3://b/\"\nglue_database = \"zuora-lake\""),
            "tables.glue_database: lower-case letters, digits and underscores",
        ),
        (GOOD.replace("[ledger]", "tables = \"https://sqs.eu-west-1.amazonaws.com/1/tables.fifo\"\n[ledger]"), "queues.tables_dlq: queues.tables and queues.tables_dlq go together"),
        (
            GOOD.replace(
                "[ledger]",
                "tables = \"https://sqs.eu-west-1.amazonaws.com/1/tables\"\ntables_dlq = \"https://sqs.eu-west-1.amazonaws.com/1/tables-dlq.fifo\"\n[ledger]",
            ),
            "queues.tables: must be a FIFO queue",
        ),
        (GOOD.replace("[ledger]", "tables = \"t.fifo\"\ntables_dlq = \"d.fifo\"\n[ledger]"), "queues.tables: expected a queue URL"),
        (GOOD.replace("partner = \"p\"", "partner = \"\""), "session.partner: must not be empty"),
        (GOOD.replace("base_url = \"https://rest.zuora.com\"", "base_url = \"rest\""), "zuora.base_url"),
        (GOOD.replace("[ledger]", "[ledger]\ncolour = 1"), "unknown field `colour`"),
        (format!("{GOOD}\n[full_export]\nwindow_months = 0"), "full_export.window_months"),
        (format!("raw_bucket = \"r\"\n{GOOD}"), "raw_bucket: only with the built-in catalogue"),
        (format!("{GOOD}\n[producer]\nwait_secs = 60"), "producer.wait_secs"),
        (format!("{GOOD}\n[producer]\nnotify_url = \"https://h/done\""), "producer.notify_url: an http(s) URL"),
        (format!("{GOOD}\n[producer]\nnotify_url = \"ftp://h/${{JOBID}}\""), "producer.notify_url"),
        (format!("{GOOD}\n[consumer]\npart_size_mib = 4"), "consumer.part_size_mib"),
        (format!("{GOOD}\n[consumer]\nchecksum = \"MD5\""), "unknown variant `MD5`, expected `CRC32C` or `CRC64NVME`"),
        (format!("{GOOD}\n[consumer]\ncompression = \"brotli\""), "in `consumer.compression`"),
        (
            format!(
                "{}\n[consumer]\ncompression = \"zstd\"",
                GOOD.replace("[session]", "[session]\nfile_format = \"gzip\"")
            ),
            "consumer.compression: gzip files from Zuora are stored as they came",
        ),
        (GOOD.replace("[session]", "[session]\nfile_format = \"zip\""), "in `session.file_format`"),
        (
            format!("{GOOD}\n[aws]\nobject_acl = \"public-read\""),
            "`public-read`, expected `bucket-owner-full-control`\nin `aws.object_acl`",
        ),
        (
            GOOD.replace("https://sqs.eu-west-1.amazonaws.com/1/jobs\"", "memory://jobs\""),
            "queues.jobs: the queues are all",
        ),
        (format!("{GOOD}\n[aws]\nexpected_bucket_owner = \"1234\""), "aws.expected_bucket_owner: an AWS account id"),
        (format!("{GOOD}\n[consumer]\nfile_stall_secs = 0"), "consumer.file_stall_secs: must be at least 1"),
        (
            GOOD.replace("https://rest.zuora.com", "https://rest.zuora.com.example.net"),
            "zuora.base_url: https://rest.zuora.com.example.net/ is not a Zuora data centre",
        ),
    ];
    for (text, expected) in cases {
        let err = Config::parse(&text, "t", Some(Secret::new("s"))).unwrap_err().to_string();
        assert!(err.contains(expected), "{err:?} should contain {expected:?}");
    }
    // A notification URL Zuora cannot use is refused without being quoted: its path is the route's secret.
    let text = format!("{GOOD}\n[producer]\nnotify_url = \"https://h/route-secret-4f1c/done\"");
    let err = Config::parse(&text, "t", Some(Secret::new("s"))).unwrap_err().to_string();
    assert!(err.contains("producer.notify_url") && !err.contains("route-secret-4f1c"), "{err}");
}
