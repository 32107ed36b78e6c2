print("veerd: coming with the agent issue")
