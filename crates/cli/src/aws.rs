//! `paddock aws deploy` and `paddock aws destroy`: the whole AWS
//! deployment (deploy/aws/, compiled into the binary) in one command.
//!
//! Deploy uploads the child templates to an S3 bucket, creates the stack
//! (or updates it), builds the images and pushes them to the stack's ECR
//! repositories, starts the control plane, gives the first admin a
//! temporary password, and prints the URL. A new stack is created with no
//! control-plane task (`ControlPlaneDesiredCount` 0), since its
//! repositories are empty until the images are pushed; the update that
//! follows starts two. Destroy deletes the stack (the tables, the
//! repositories and the user pool are retained, as the templates say).

use anyhow::{bail, Context, Result};
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use std::collections::BTreeMap;
use std::time::Duration;

/// The parent template and its children, as `deploy/aws/` has them.
const PARENT: &str = include_str!("../../../deploy/aws/paddock.yaml");
const CHILDREN: [(&str, &str); 8] = [
    ("network", include_str!("../../../deploy/aws/network.yaml")),
    ("logs", include_str!("../../../deploy/aws/logs.yaml")),
    ("storage", include_str!("../../../deploy/aws/storage.yaml")),
    ("auth", include_str!("../../../deploy/aws/auth.yaml")),
    ("secrets", include_str!("../../../deploy/aws/secrets.yaml")),
    (
        "security",
        include_str!("../../../deploy/aws/security.yaml"),
    ),
    ("api", include_str!("../../../deploy/aws/api.yaml")),
    ("compute", include_str!("../../../deploy/aws/compute.yaml")),
];

#[derive(Debug, clap::Subcommand)]
pub enum AwsCmd {
    /// Create or update paddock's stack on AWS, push its images, and print
    /// its URL and the first admin's temporary password.
    Deploy(DeployArgs),
    /// Delete the stack (its tables, repositories and user pool are kept).
    Destroy(DestroyArgs),
}

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The stack's name; it names everything the stack makes (lower case,
    /// letters, digits and dashes).
    #[arg(long)]
    stack: String,
    /// The AWS region [default: the standard chain's].
    #[arg(long)]
    region: Option<String>,
    /// The first admin's email (Cognito user in the Administrators group).
    #[arg(long)]
    admin_email: String,
    /// The name users reach paddock at (paddock.example.com).
    #[arg(long, default_value = "")]
    domain: String,
    /// An ACM certificate for --domain: HTTPS on 443 (80 redirects).
    #[arg(long, default_value = "")]
    certificate_arn: String,
    /// A Route 53 hosted zone of --domain, for its alias record.
    #[arg(long, default_value = "")]
    hosted_zone_id: String,
    /// The GPU capacity providers' instance type.
    #[arg(long, default_value = "g5.xlarge")]
    gpu_instance_type: String,
    /// Also build and push this model's image (weights baked in) from the
    /// local store (repeatable).
    #[arg(long)]
    model: Vec<String>,
    /// The S3 bucket for the child templates [default:
    /// paddock-<stack>-<region>-templates, made when missing].
    #[arg(long)]
    template_bucket: Option<String>,
    /// Do not build or push images (they are in the repositories already).
    #[arg(long)]
    skip_images: bool,
    /// The image tag to run [default: this release's version].
    #[arg(long)]
    image_tag: Option<String>,
    /// Longest wait for the stack, minutes.
    #[arg(long, default_value_t = 60)]
    timeout_minutes: u64,
}

#[derive(Debug, clap::Args)]
pub struct DestroyArgs {
    #[arg(long)]
    stack: String,
    #[arg(long)]
    region: Option<String>,
    /// Longest wait for the deletion, minutes.
    #[arg(long, default_value_t = 60)]
    timeout_minutes: u64,
}

pub async fn run(cmd: AwsCmd) -> Result<()> {
    match cmd {
        AwsCmd::Deploy(a) => deploy(a).await,
        AwsCmd::Destroy(a) => destroy(a).await,
    }
}

/// A stack name that every name derived from it accepts: ECR repositories
/// (lower case), capacity providers (not `aws`, `ecs`, `fargate` first),
/// DynamoDB tables and S3 buckets.
pub fn check_stack_name(name: &str) -> Result<()> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if name.is_empty()
        || name.len() > 32
        || !ok_chars
        || !name.starts_with(|c: char| c.is_ascii_lowercase())
        || name.ends_with('-')
    {
        bail!("--stack {name:?}: use 1 to 32 lower-case letters, digits and dashes, starting with a letter");
    }
    if ["aws", "ecs", "fargate"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        bail!("--stack {name:?}: may not begin with aws, ecs or fargate (ECS refuses such capacity provider names)");
    }
    Ok(())
}

async fn sdk(region: &Option<String>) -> aws_types::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(r) = region {
        loader = loader.region(aws_types::region::Region::new(r.clone()));
    }
    loader.load().await
}

fn s3_client(sdk: &aws_types::SdkConfig) -> aws_sdk_s3::Client {
    // An emulator's endpoint takes bucket names in the path.
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn param(k: &str, v: &str) -> Parameter {
    Parameter::builder()
        .parameter_key(k)
        .parameter_value(v)
        .build()
}

/// The stack's status, or `None` when it does not exist.
async fn stack_status(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
) -> Result<Option<(StackStatus, BTreeMap<String, String>)>> {
    match cfn.describe_stacks().stack_name(stack).send().await {
        Ok(out) => Ok(out.stacks().first().map(|s| {
            let outputs = s
                .outputs()
                .iter()
                .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
                .collect();
            (
                s.stack_status()
                    .cloned()
                    .unwrap_or(StackStatus::CreateInProgress),
                outputs,
            )
        })),
        Err(e) => {
            let msg = aws_sdk_cloudformation::error::DisplayErrorContext(e).to_string();
            if msg.contains("does not exist") {
                Ok(None)
            } else {
                Err(anyhow::anyhow!("DescribeStacks: {msg}"))
            }
        }
    }
}

/// Why a stack operation failed: its events' failure reasons.
async fn failure_reasons(cfn: &aws_sdk_cloudformation::Client, stack: &str) -> String {
    let Ok(out) = cfn.describe_stack_events().stack_name(stack).send().await else {
        return String::new();
    };
    out.stack_events()
        .iter()
        .filter(|e| {
            e.resource_status()
                .is_some_and(|s| s.as_str().ends_with("_FAILED"))
        })
        .filter_map(|e| {
            Some(format!(
                "  {}: {}",
                e.logical_resource_id()?,
                e.resource_status_reason().unwrap_or("failed")
            ))
        })
        .take(10)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until the stack leaves its `*_IN_PROGRESS` state; its outputs on
/// success. `gone_ok`: a stack that no longer exists is the success
/// (deletion).
async fn wait_stack(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
    timeout: Duration,
    gone_ok: bool,
) -> Result<BTreeMap<String, String>> {
    let start = std::time::Instant::now();
    let mut last = String::new();
    loop {
        match stack_status(cfn, stack).await? {
            None if gone_ok => return Ok(BTreeMap::new()),
            None => bail!("stack {stack} does not exist"),
            Some((status, outputs)) => {
                let s = status.as_str().to_owned();
                if s != last {
                    eprintln!("stack {stack}: {s}");
                    last = s.clone();
                }
                if s == "DELETE_COMPLETE" && gone_ok {
                    return Ok(BTreeMap::new());
                }
                if !s.ends_with("_IN_PROGRESS") {
                    let ok = matches!(
                        status,
                        StackStatus::CreateComplete | StackStatus::UpdateComplete
                    );
                    if ok {
                        return Ok(outputs);
                    }
                    bail!(
                        "stack {stack} ended {s}:\n{}",
                        failure_reasons(cfn, stack).await
                    );
                }
            }
        }
        if start.elapsed() > timeout {
            bail!(
                "stack {stack} is still {last} after {} s",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_secs(if gone_ok { 5 } else { 3 }).min(timeout)).await;
    }
}

/// The bucket for the templates, made when missing.
async fn template_bucket(s3: &aws_sdk_s3::Client, name: &str, region: &str) -> Result<()> {
    if s3.head_bucket().bucket(name).send().await.is_ok() {
        return Ok(());
    }
    let mut req = s3.create_bucket().bucket(name);
    if region != "us-east-1" {
        req = req.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(region))
                .build(),
        );
    }
    req.send().await.map_err(|e| {
        anyhow::anyhow!(
            "creating bucket {name}: {}",
            aws_sdk_s3::error::DisplayErrorContext(e)
        )
    })?;
    Ok(())
}

/// Builds the images and pushes them to the stack's repositories.
async fn push_images(
    sdk: &aws_types::SdkConfig,
    a: &DeployArgs,
    tag: &str,
    outputs: &BTreeMap<String, String>,
) -> Result<()> {
    use base64::Engine;
    let repo = outputs
        .get("PaddockRepositoryUri")
        .context("the stack has no PaddockRepositoryUri output")?;
    let model_repo = outputs
        .get("ModelRepositoryUri")
        .context("the stack has no ModelRepositoryUri output")?;
    let local = format!("paddock:{tag}");
    crate::image::build(crate::image::BuildArgs {
        model: a.model.clone(),
        tag: Some(local.clone()),
        binary: None,
        debian_mirror: std::env::var("PADDOCK_DEBIAN_MIRROR")
            .unwrap_or_else(|_| "http://deb.debian.org/debian".into()),
        store: paddock_runtime::cli::StoreArgs {
            data_dir: std::env::var_os("PADDOCK_DATA_DIR")
                .map(Into::into)
                .unwrap_or_else(paddock_server::config::default_data_dir),
            ollama_models_dir: None,
            registry: paddock_models::DEFAULT_REGISTRY.into(),
        },
    })?;
    // docker login to the registry with an ECR token.
    let ecr = aws_sdk_ecr::Client::new(sdk);
    let auth = ecr.get_authorization_token().send().await.map_err(|e| {
        anyhow::anyhow!(
            "ECR GetAuthorizationToken: {}",
            aws_sdk_ecr::error::DisplayErrorContext(e)
        )
    })?;
    let data = auth
        .authorization_data()
        .first()
        .context("ECR gave no authorization data")?;
    let token = base64::engine::general_purpose::STANDARD
        .decode(data.authorization_token().unwrap_or_default())
        .context("ECR's token")?;
    let token = String::from_utf8(token).context("ECR's token")?;
    let password = token.split_once(':').map(|(_, p)| p).unwrap_or_default();
    let registry = repo.split('/').next().unwrap_or_default();
    let mut login = std::process::Command::new("docker")
        .args(["login", "--username", "AWS", "--password-stdin", registry])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("cannot run docker login")?;
    {
        use std::io::Write;
        login
            .stdin
            .take()
            .context("docker login's input")?
            .write_all(password.as_bytes())?;
    }
    if !login.wait()?.success() {
        bail!("docker login to {registry} failed");
    }
    let mut pushes = vec![(local, format!("{repo}:{tag}"))];
    for m in &a.model {
        let t = paddock_core::driver::model_image_tag(m);
        pushes.push((format!("paddock-model:{t}"), format!("{model_repo}:{t}")));
    }
    for (from, to) in pushes {
        let mut c = crate::image::docker();
        c.args(["tag", &from, &to]);
        crate::image::check(c, &format!("docker tag {from} {to}"))?;
        let mut c = crate::image::docker();
        c.args(["push", "--quiet", &to]);
        eprintln!("pushing {to}");
        crate::image::check(c, &format!("docker push {to}"))?;
    }
    Ok(())
}

/// A temporary password Cognito accepts (upper, lower, digits, a symbol).
fn temporary_password() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::thread_rng();
    let body: String = (0..16)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect();
    format!("{body}-Aa9")
}

async fn deploy(a: DeployArgs) -> Result<()> {
    check_stack_name(&a.stack)?;
    if !a.admin_email.contains('@') {
        bail!(
            "--admin-email {:?}: must be an email address",
            a.admin_email
        );
    }
    if !a.certificate_arn.is_empty() && a.domain.is_empty() {
        bail!("--certificate-arn needs --domain (the name the certificate is for)");
    }
    let sdk = sdk(&a.region).await;
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .context("no AWS region: give --region or set AWS_REGION")?;
    let cfn = aws_sdk_cloudformation::Client::new(&sdk);
    let s3 = s3_client(&sdk);
    let timeout = Duration::from_secs(a.timeout_minutes * 60);
    let tag = a
        .image_tag
        .clone()
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned());

    // The child templates, where the parent's TemplateURLs point.
    let bucket = a
        .template_bucket
        .clone()
        .unwrap_or_else(|| format!("paddock-{}-{region}-templates", a.stack));
    template_bucket(&s3, &bucket, &region).await?;
    let prefix = format!(
        "{}/{}/",
        a.stack,
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    );
    for (name, body) in CHILDREN {
        s3.put_object()
            .bucket(&bucket)
            .key(format!("{prefix}{name}.yaml"))
            .content_type("application/x-yaml")
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "uploading {name}.yaml: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            })?;
    }
    eprintln!("uploaded the templates to s3://{bucket}/{prefix}");

    let params = |desired: &str| {
        vec![
            param("TemplateBucket", &bucket),
            param("TemplatePrefix", &prefix),
            param("ImageTag", &tag),
            param("ControlPlaneDesiredCount", desired),
            param("AdminEmail", &a.admin_email),
            param("DomainName", &a.domain),
            param("CertificateArn", &a.certificate_arn),
            param("HostedZoneId", &a.hosted_zone_id),
            param("GpuInstanceType", &a.gpu_instance_type),
        ]
    };
    let exists = stack_status(&cfn, &a.stack).await?.is_some();
    let mut outputs = if exists {
        None
    } else {
        // Without images to push, the control plane can start at once.
        let desired = if a.skip_images { "2" } else { "0" };
        cfn.create_stack()
            .stack_name(&a.stack)
            .template_body(PARENT)
            .set_parameters(Some(params(desired)))
            .capabilities(Capability::CapabilityIam)
            .tags(
                aws_sdk_cloudformation::types::Tag::builder()
                    .key("paddock:deployment")
                    .value(&a.stack)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "CreateStack: {}",
                    aws_sdk_cloudformation::error::DisplayErrorContext(e)
                )
            })?;
        eprintln!("creating stack {}", a.stack);
        Some(wait_stack(&cfn, &a.stack, timeout, false).await?)
    };
    if !a.skip_images {
        let current = match &outputs {
            Some(o) => o.clone(),
            None => stack_status(&cfn, &a.stack)
                .await?
                .map(|(_, o)| o)
                .unwrap_or_default(),
        };
        push_images(&sdk, &a, &tag, &current).await?;
    }
    if exists || !a.skip_images {
        match cfn
            .update_stack()
            .stack_name(&a.stack)
            .template_body(PARENT)
            .set_parameters(Some(params("2")))
            .capabilities(Capability::CapabilityIam)
            .send()
            .await
        {
            Ok(_) => {
                eprintln!("updating stack {}", a.stack);
                outputs = Some(wait_stack(&cfn, &a.stack, timeout, false).await?);
            }
            Err(e) => {
                let msg = aws_sdk_cloudformation::error::DisplayErrorContext(e).to_string();
                if !msg.contains("No updates are to be performed") {
                    bail!("UpdateStack: {msg}");
                }
                eprintln!("stack {} is up to date", a.stack);
                outputs = stack_status(&cfn, &a.stack).await?.map(|(_, o)| o);
            }
        }
    }
    let outputs = outputs.unwrap_or_default();
    let url = outputs.get("Url").cloned().unwrap_or_default();

    // The first admin's temporary password (changed at first sign-in).
    let password = match outputs.get("UserPoolId") {
        Some(pool) => {
            let p = temporary_password();
            let cognito = aws_sdk_cognitoidentityprovider::Client::new(&sdk);
            match cognito
                .admin_set_user_password()
                .user_pool_id(pool)
                .username(&a.admin_email)
                .password(&p)
                .permanent(false)
                .send()
                .await
            {
                Ok(_) => Some(p),
                Err(e) => {
                    eprintln!(
                        "warning: the first admin's password could not be set ({}); Cognito mailed a temporary one to {}",
                        aws_sdk_cognitoidentityprovider::error::DisplayErrorContext(e),
                        a.admin_email
                    );
                    None
                }
            }
        }
        None => None,
    };
    println!("url\t{url}");
    println!("admin\t{}", a.admin_email);
    if let Some(p) = password {
        println!("temporary password\t{p}");
    }
    for (k, v) in &outputs {
        if k != "Url" {
            println!("{k}\t{v}");
        }
    }
    Ok(())
}

async fn destroy(a: DestroyArgs) -> Result<()> {
    check_stack_name(&a.stack)?;
    let sdk = sdk(&a.region).await;
    let cfn = aws_sdk_cloudformation::Client::new(&sdk);
    if stack_status(&cfn, &a.stack).await?.is_none() {
        bail!("stack {} does not exist", a.stack);
    }
    cfn.delete_stack()
        .stack_name(&a.stack)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "DeleteStack: {}",
                aws_sdk_cloudformation::error::DisplayErrorContext(e)
            )
        })?;
    eprintln!("deleting stack {}", a.stack);
    wait_stack(
        &cfn,
        &a.stack,
        Duration::from_secs(a.timeout_minutes * 60),
        true,
    )
    .await?;
    println!(
        "deleted {}; kept: its DynamoDB tables ({}-*), ECR repositories and Cognito user pool (delete them by hand to remove the data)",
        a.stack, a.stack
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_names() {
        assert!(check_stack_name("paddock").is_ok());
        assert!(check_stack_name("team-1").is_ok());
        for bad in [
            "", "Paddock", "ecs-x", "aws1", "fargate", "a_b", "x-", "1abc",
        ] {
            assert!(check_stack_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn temporary_passwords_meet_the_pool_policy() {
        let p = temporary_password();
        assert!(p.len() >= 8);
        assert!(p.chars().any(|c| c.is_ascii_uppercase()));
        assert!(p.chars().any(|c| c.is_ascii_lowercase()));
        assert!(p.chars().any(|c| c.is_ascii_digit()));
    }
}
