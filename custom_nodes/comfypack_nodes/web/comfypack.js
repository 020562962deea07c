// comfypack front-end extension: a placeholder that only registers the
// extension, so later canvas features (field previews, name checks) have a home.
import { app } from "../../scripts/app.js";

app.registerExtension({
  name: "comfypack",
});
