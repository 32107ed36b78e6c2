// deploy/ as a kustomize base, as users apply it: `kubectl apply -k deploy/`. Every rendered
// object is validated offline against the Kubernetes OpenAPI schemas (kubernetes-validate,
// strict: an unknown field is an error too), the base and the overlay example alike.
import Foundation
import Testing
import Yams

/// The overlay example: --hostns-only and the capacity flags on top of deploy/.
let overlayExample = "examples/kustomize/hostns-only"

/// The Kubernetes version the schemas are taken from: the oldest the DaemonSet supports
/// (appArmorProfile needs 1.30) is checked too.
private let kubernetesVersions = ["1.30.0", "1.32.0"]

/// kubernetes-validate from PyPI, installed by `make deploy-tools` into .build/deploy-venv
/// (`make test` sets VEER_KUBE_VALIDATE).
private func validator() throws -> String {
    let path = ProcessInfo.processInfo.environment["VEER_KUBE_VALIDATE"]
        ?? repoRoot.appendingPathComponent(".build/deploy-venv/bin/kubernetes-validate").path
    try #require(FileManager.default.isExecutableFile(atPath: path), """
        kubernetes-validate is not installed at \(path): run `make deploy-tools` (or `make test`, which \
        installs it into .build/deploy-venv), then test again.
        """)
    return path
}

/// Validates YAML offline; returns the validator's complaints (empty when every object is valid).
private func validate(_ yaml: String, kubernetes version: String) throws -> [String] {
    let file = NSTemporaryDirectory() + "veer-validate-\(getpid())-\(UUID().uuidString.prefix(8)).yaml"
    try yaml.write(toFile: file, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(atPath: file) }
    let r = try run(try validator(), ["--strict", "--quiet", "-k", version, file])
    let complaints = (r.stdout + r.stderr).split(separator: "\n").map(String.init)
        .filter { $0.hasPrefix("ERROR") || $0.contains("did not validate") }
    // A non-zero exit with nothing recognisable is a failure too, reported whole.
    if r.status != 0 && complaints.isEmpty { return ["kubernetes-validate exited \(r.status): \(r.stdout)\(r.stderr)"] }
    return complaints
}

private func yaml(_ objects: [[String: Any]]) throws -> String {
    try objects.map { try Yams.dump(object: $0) }.joined(separator: "---\n")
}

@Suite("deploy/ as a kustomize base")
struct KustomizeTests {
    @Test("Every object deploy/ and the overlay example render validates against the Kubernetes OpenAPI schemas",
          arguments: ["deploy", overlayExample])
    func rendersValid(directory: String) throws {
        let rendered = try renderKustomization(directory)
        #expect(try manifests(directory).count == 5)
        for version in kubernetesVersions {
            let complaints = try validate(rendered, kubernetes: version)
            #expect(complaints.isEmpty, "\(directory) against Kubernetes \(version):\n\(complaints.joined(separator: "\n"))")
        }
    }

    @Test("A rendered object with a wrong field fails validation, naming the object and the field")
    func brokenObjectFails() throws {
        var objects = try manifests().map(\.object)
        let index = try #require(objects.firstIndex { $0["kind"] as? String == "DaemonSet" })
        // The metrics port as a name where the schema wants a number: a typo a user could make.
        var ds = objects[index], spec = dict(ds["spec"]), template = dict(spec["template"]), pod = dict(template["spec"])
        var containers = list(pod["containers"])
        var ports = list(containers[0]["ports"])
        ports[0]["containerPort"] = "nine-nine-six-five"
        containers[0]["ports"] = ports
        pod["containers"] = containers; template["spec"] = pod; spec["template"] = template; ds["spec"] = spec
        objects[index] = ds
        let complaints = try validate(try yaml(objects), kubernetes: kubernetesVersions.last!)
        #expect(complaints.count == 1, "\(complaints)")
        let line = complaints.first ?? ""
        #expect(line.contains("daemonset/veer"), "the complaint does not name the object: \(line)")
        #expect(line.contains("spec.template.spec.containers.0.ports.0.containerPort"), "the complaint does not name the field: \(line)")

        // And strict mode: a misspelt field is an error, not silently dropped by the API server.
        var misspelt = try manifests().map(\.object)
        var role = misspelt[try #require(misspelt.firstIndex { $0["kind"] as? String == "ClusterRole" })]
        role["rulez"] = role.removeValue(forKey: "rules")
        misspelt[misspelt.firstIndex { $0["kind"] as? String == "ClusterRole" }!] = role
        let strict = try validate(try yaml(misspelt), kubernetes: kubernetesVersions.last!)
        #expect(strict.contains { $0.contains("clusterrole/veer") && $0.contains("rulez") }, "\(strict)")
    }

    @Test("The image and the API server address are each set in one place, deploy/kustomization.yaml")
    func onePlace() throws {
        let kustomization = try #require(try Yams.load(yaml: try text("deploy/kustomization.yaml")) as? [String: Any])
        let images = list(kustomization["images"])
        try #require(images.count == 1, "one image entry: \(images)")
        let image = "\(images[0]["newName"] ?? "")" + ":" + "\(images[0]["newTag"] ?? "")"
        // make test passes the name `make image` gives its image: the base must deploy that one.
        if let built = ProcessInfo.processInfo.environment["VEER_IMAGE"] {
            #expect(image == built, "deploy/kustomization.yaml deploys \(image), `make image` builds \(built)")
        }
        for directory in ["deploy", overlayExample] {
            let pod = try daemonSetPod(directory)
            for c in pod.containers + pod.initContainers {
                #expect(c["image"] as? String == image, "\(directory): container \(c["name"] ?? "?") runs \(c["image"] ?? "no image")")
            }
        }
        // The raw manifests name only the placeholder `images:` rewrites.
        let raw = try text("deploy/daemonset.yaml")
        #expect(raw.matches(of: try Regex(#"(?m)^\s+image: (\S+)"#)).allSatisfy { $0.output[1].substring == "veer" })

        // The API server: one literal in the generator, nowhere else in deploy/.
        let generators = list(kustomization["configMapGenerator"])
        let literals = generators.flatMap { strings($0["literals"]) }.filter { $0.hasPrefix("api-server=") }
        try #require(literals.count == 1, "\(literals)")
        let url = String(literals[0].dropFirst("api-server=".count))
        for file in try yamlFiles() where file != "kustomization.yaml" {
            #expect(!(try text("deploy/\(file)")).contains(url), "deploy/\(file) repeats the API server address")
        }
        let map = try one("ConfigMap")
        #expect(dict(map.object["data"])["api-server"] as? String == url)
    }

    @Test("The overlay example adds --hostns-only and the capacity flags, and changes nothing else of veerd's")
    func overlay() throws {
        let base = try daemonSetPod().container("veerd"), over = try daemonSetPod(overlayExample).container("veerd")
        let added = Array(args(over).dropFirst(args(base).count))
        #expect(Array(args(over).prefix(args(base).count)) == args(base), "the overlay must keep the base's arguments")
        #expect(Set(flagNames(in: added)) == ["--hostns-only", "--max-service-entries", "--max-backends", "--max-members"], "\(added)")
        for flag in ["--max-service-entries", "--max-backends", "--max-members"] {
            #expect(Int(flagValue(added, flag) ?? "").map { $0 > 0 } == true, "\(flag) needs a positive number: \(added)")
        }
    }
}
