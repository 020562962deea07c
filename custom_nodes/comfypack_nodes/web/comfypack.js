// comfypack front-end extension.
import { app } from "../../scripts/app.js";

app.registerExtension({
  name: "comfypack",
  // The frontend's "Comfy.UploadAudio" gives every node whose `audio` combo has audio_upload an
  // upload button, which looks up an `audioUI` player widget when it is created — a widget only
  // LoadAudio & co get ("Comfy.AudioWidget"). Without it ComfyPack Audio Input cannot even be
  // created on the canvas. Give it the player (before the button) and keep the player out of the
  // API prompt. comfypack/uiformat.py mirrors this when it converts UI-format workflows.
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== "ComfyPackInputAudio" || !nodeData.input?.required) return;
    const { upload, ...rest } = nodeData.input.required;
    nodeData.input.required = { ...rest, audioUI: ["AUDIO_UI", {}], ...(upload ? { upload } : {}) };
  },
  nodeCreated(node) {
    if (node?.comfyClass !== "ComfyPackInputAudio") return;
    const player = node.widgets?.find((w) => w.name === "audioUI");
    if (player) player.options = { ...player.options, serialize: false };
  },
});
