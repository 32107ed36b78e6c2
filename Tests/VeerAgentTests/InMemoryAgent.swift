import Logging
import VeerAgent
import VeerDatapath

/// An agent on in-memory maps as the agent tests run it: no state files, no pins, logs only
/// when critical. `configure` sets what a suite needs beyond that.
func inMemoryAgent(_ maps: any MapStore, node: String, label: String,
                   configure: (inout AgentConfiguration) -> Void = { _ in }) -> Agent {
    var config = AgentConfiguration(nodeName: node, pins: PinLayout(root: "/nonexistent"))
    config.writesStateFiles = false
    configure(&config)
    var logger = Logger(label: label)
    logger.logLevel = .critical
    return Agent(config: config, maps: maps, logger: logger)
}
